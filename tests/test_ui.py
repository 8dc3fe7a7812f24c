# SPDX-License-Identifier: GPL-3.0-or-later
"""The sidebar as the artist reads it, inside real headless Blender.

Every panel's draw() runs against a recording layout: a stand-in for UILayout that accepts
only the functions and keyword arguments UILayout's RNA declares (enum values — icons
included — checked against their items), fails on a property missing from the data it is
read from, on an operator that is not registered and on an operator property it does not
have. What it records is a readable text snapshot, per panel and model, with jobs in every
state, with and without keys, online access on and off; the snapshots are committed under
tests/ui_snapshots/ and compared here. Regenerate them with RECON3D_UPDATE_SNAPSHOTS=1.
"""
from __future__ import annotations

import importlib
import threading
import os
import time
from pathlib import Path
from types import SimpleNamespace

import bpy
import pytest

from conftest import PKG
from emulator import wait_until

SNAPSHOTS = Path(__file__).resolve().parent / "ui_snapshots"
UPDATE = os.environ.get("RECON3D_UPDATE_SNAPSHOTS") == "1"
FUNCTIONS = bpy.types.UILayout.bl_rna.functions
CONTAINERS = {"row", "column", "box", "split", "grid_flow", "column_flow"}
LAYOUT_ATTRIBUTES = set(bpy.types.UILayout.bl_rna.properties.keys())
T0 = 1_800_000_000.0          # a fixed "now" for elapsed times


class LayoutError(AssertionError):
    pass


def _describe(value):
    if isinstance(value, bpy.types.ID):
        return f"{type(value).__name__}({value.name!r})"
    if isinstance(value, bpy.types.bpy_struct):
        return type(value).__name__
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value)


def _check_arguments(name: str, args: tuple, kwargs: dict) -> dict:
    """Bind the call to UILayout's declared parameters; check enum values."""
    params = list(FUNCTIONS[name].parameters)
    inputs = [p for p in params if not p.is_output]
    if len(args) > len(inputs):
        raise LayoutError(f"{name}() takes {len(inputs)} arguments, got {len(args)}")
    bound = dict(zip((p.identifier for p in inputs), args))
    for key, value in kwargs.items():
        if key in bound:
            raise LayoutError(f"{name}() got {key!r} twice")
        if key not in {p.identifier for p in inputs}:
            raise LayoutError(f"UILayout.{name}() has no parameter {key!r} in Blender "
                              f"{bpy.app.version_string}")
        bound[key] = value
    for param in inputs:
        value = bound.get(param.identifier)
        if param.type == "ENUM" and isinstance(value, str):
            items = param.enum_items.keys()
            if items and value not in items:
                raise LayoutError(f"{name}({param.identifier}={value!r}): not one of "
                                  f"Blender's values")
        if param.is_required and param.identifier not in bound:
            raise LayoutError(f"{name}() is missing {param.identifier!r}")
    return bound


def _check_prop(data, prop: str, where: str) -> None:
    if data is None:
        raise LayoutError(f"{where}: data is None")
    if prop not in data.bl_rna.properties.keys():
        raise LayoutError(f"{where}: {type(data).__name__} has no property {prop!r}")


def _operator_type(idname: str):
    module, _, name = idname.partition(".")
    ops_module = getattr(bpy.ops, module)
    if not hasattr(ops_module, name):
        raise LayoutError(f"operator {idname!r} is not registered")
    try:
        return getattr(ops_module, name).get_rna_type()
    except KeyError:
        raise LayoutError(f"operator {idname!r} is not registered") from None


def _operator_poll(idname: str) -> bool:
    module, _, name = idname.partition(".")
    return getattr(getattr(bpy.ops, module), name).poll()


class OperatorProps:
    """What layout.operator() returns: only the operator's own properties may be set."""

    def __init__(self, rna, line: list):
        object.__setattr__(self, "_rna", rna)
        object.__setattr__(self, "_line", line)

    def __setattr__(self, key, value):
        if key not in self._rna.properties.keys():
            raise LayoutError(f"operator {self._rna.identifier} has no property {key!r}")
        self._line.append(f"{key}={_describe(value)}")


class RecordingLayout:
    def __init__(self, lines: list, depth: int = 0, context=None):
        object.__setattr__(self, "_lines", lines)
        object.__setattr__(self, "_depth", depth)
        object.__setattr__(self, "_context", context)

    def _emit(self, parts: list) -> list:
        self._lines.append(("  " * self._depth, parts))
        return parts

    def __setattr__(self, key, value):
        if key not in LAYOUT_ATTRIBUTES:
            raise LayoutError(f"UILayout has no attribute {key!r}")
        self._emit([f"·{key} = {_describe(value)}"])

    def __getattr__(self, name):
        if name not in FUNCTIONS.keys():
            raise LayoutError(f"UILayout has no function {name!r} in Blender "
                              f"{bpy.app.version_string}")
        return lambda *args, **kwargs: self._call(name, args, kwargs)

    def _call(self, name, args, kwargs):
        bound = _check_arguments(name, args, kwargs)
        if name in CONTAINERS:
            self._emit([name] + [f"{k}={_describe(v)}" for k, v in kwargs.items()])
            return RecordingLayout(self._lines, self._depth + 1, self._context)
        if name == "icon":
            return 1                                # a stand-in icon id
        rest = {k: v for k, v in bound.items() if k not in ("data", "property", "operator")}
        if name == "icon" or "icon_value" in rest:
            rest["icon_value"] = "<icon>" if rest.get("icon_value") else 0
        details = [f"{k}={_describe(v)}" for k, v in rest.items()]
        if name in ("prop", "template_ID", "prop_search"):
            data, prop = bound["data"], bound["property"]
            _check_prop(data, prop, name)
            if name == "template_ID" and bound.get("open"):
                _operator_type(bound["open"])
            value = getattr(data, prop)
            return self._emit([f"{name} {type(data).__name__}.{prop} = {_describe(value)}"]
                              + details)
        if name == "operator":
            rna = _operator_type(bound["operator"])
            line = self._emit([f"operator {bound['operator']}"] + details)
            if bound["operator"].startswith("recon3d.") and not _operator_poll(bound["operator"]):
                line.insert(1, "(greyed out)")
            return OperatorProps(rna, line)
        if name == "template_list":
            return self._template_list(bound)
        return self._emit([name] + details)

    def _template_list(self, bound):
        ui_list = getattr(bpy.types, bound["listtype_name"], None)
        if ui_list is None or not issubclass(ui_list, bpy.types.UIList):
            raise LayoutError(f"UIList {bound['listtype_name']!r} is not registered")
        data, prop = bound["dataptr"], bound["propname"]
        _check_prop(data, prop, "template_list")
        _check_prop(bound["active_dataptr"], bound["active_propname"], "template_list")
        active = getattr(bound["active_dataptr"], bound["active_propname"])
        self._emit([f"template_list {bound['listtype_name']} "
                    f"{type(data).__name__}.{prop} active={active}"])
        fake = SimpleNamespace(bitflag_filter_item=1 << 30)
        items = list(getattr(data, prop))
        flags = [fake.bitflag_filter_item] * len(items)
        if "filter_items" in ui_list.__dict__:
            flags, order = ui_list.filter_items(fake, self._context, data, prop)
            assert not order and len(flags) == len(items)
        for index, (item, flag) in enumerate(zip(items, flags)):
            if not flag & fake.bitflag_filter_item:
                continue
            row = RecordingLayout(self._lines, self._depth + 1, self._context)
            row._emit([f"item {index}{' (selected)' if index == active else ''}"])
            ui_list.draw_item(fake, self._context, RecordingLayout(
                self._lines, self._depth + 2, self._context), data, item, 0,
                bound["active_dataptr"], bound["active_propname"], index)


#: text that differs between runs (temporary folders) → what the snapshot shows instead
PLACEHOLDERS: dict[str, str] = {}


def render(lines) -> str:
    text = "\n".join(indent + " ".join(str(p) for p in parts) for indent, parts in lines)
    for real, shown in PLACEHOLDERS.items():
        text = text.replace(real, shown)
    return text


def draw_panel(panel_cls, context=None) -> str:
    context = context or bpy.context
    lines: list = []
    panel_cls.draw(SimpleNamespace(layout=RecordingLayout(lines, 0, context)), context)
    return render(lines)


# -- the situations ---------------------------------------------------------------------------
def modules():
    return (importlib.import_module(f"{PKG}.panels"), importlib.import_module(f"{PKG}.operators"),
            importlib.import_module(f"{PKG}.operators.checks"),
            importlib.import_module(f"{PKG}.addon.runtime"),
            importlib.import_module(f"{PKG}.providers"),
            importlib.import_module(f"{PKG}.jobs"))


def make_jobs(job_module, provider_id: str, photo: str) -> list:
    """One job in every state, as the engine would hold them (never run)."""
    jobs = []
    for index, state in enumerate(job_module.model.STATES):
        job = job_module.Job(provider_id, {"image_path": photo}, job_id=f"job-{index}-{state}",
                             label=f"chair {index}")
        job.state = state
        job.created_at = T0 - 300 + index
        job.progress = {"running": 0.4, "downloading": 0.9}.get(state, 0.0)
        if state not in ("queued", "submitting"):
            job.remote_id = f"remote-{index}"
            job.submitted_at = job.created_at + 5
        if state in ("ready", "imported", "failed", "canceled"):
            job.finished_at = job.created_at + 95
        if state in ("ready", "imported"):
            job.files = [photo]
            job.cost = 0.05
            job.remaining_credits = 12.5
        if state == "imported":
            job.imported_objects = ["Recon3D chair"]
            if provider_id == "segmind_sam3d":      # a parameter Recon3D does not list
                job.inputs["options"] = {"guidance": 3.5}
        if state == "ready" and provider_id == "runware_sam3d":
            job.notice = ("1 of 3 variations could not be made (Inference failed for this "
                          "result); the 2 made are kept.")
        if state == "failed":
            job.error = ("The download of the result was cut off three times. The job is "
                         "paid for; press Retry Download to fetch it again without paying "
                         "again.")
            job.error_code = "download"
        jobs.append(job)
    return jobs


def steady(monkeypatch, panels, eng) -> None:
    """A fixed clock, and the engine's watch on the shared folder paused: the jobs a test puts
    in the engine stay the only ones listed (the watch would list the journal's jobs of
    earlier tests again within its interval)."""
    monkeypatch.setattr(panels.common, "now", lambda: T0)
    monkeypatch.setattr(eng, "check_others", lambda: None)


@pytest.fixture
def ui(recon3d, emulator, monkeypatch, tmp_path):
    panels, operators, checks, runtime, providers, jobs_module = modules()
    eng = runtime.engine()
    steady(monkeypatch, panels, eng)
    saved = dict(eng._jobs)
    photo = bpy.data.images.new("photo", 64, 48)
    photo_file = str(tmp_path / "photo.png")
    photo.filepath_raw = photo_file
    photo.file_format = "PNG"
    photo.save()
    PLACEHOLDERS[photo_file] = "<folder>/photo.png"
    yield SimpleNamespace(panels=panels, operators=operators, checks=checks, runtime=runtime,
                          registry=providers.REGISTRY, jobs=jobs_module, engine=eng,
                          photo=photo, photo_file=photo_file, monkeypatch=monkeypatch)
    with eng._lock:
        eng._jobs.clear()
        eng._jobs.update(saved)
    importlib.import_module(f"{PKG}.addon.form").sync_job_list(bpy.context.window_manager,
                                                                 eng.jobs())


def compare(name: str, text: str) -> None:
    path = SNAPSHOTS / f"{name}.txt"
    if UPDATE:
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
        return
    assert path.exists(), f"no snapshot {path.name}: run with RECON3D_UPDATE_SNAPSHOTS=1"
    expected = path.read_text(encoding="utf-8")
    assert text + "\n" == expected, f"{path.name} differs from what the panel draws now"


def _without_keys(ui, cls):
    for key in cls.keys:
        ui.monkeypatch.delenv(key.env, raising=False)


def _generate_variants(ui, cls):
    """(title, set-up) pairs for the Generate panel; each starts from the session's state."""
    form = bpy.context.scene.recon3d
    prefs = importlib.import_module(f"{PKG}.addon.preferences").get()

    def no_photo():
        form.image = None

    def photo_with_picks():
        form.image = ui.photo
        form.points = "10,20; 30,40"
        form.boxes = "2,3,50,40"

    def keys_missing():
        form.image = ui.photo
        _without_keys(ui, cls)

    def keys_in_preferences():
        form.image = ui.photo
        _without_keys(ui, cls)
        for key in cls.keys:
            setattr(prefs, key.pref, "typed-in-preferences")

    def online_off():
        form.image = ui.photo
        ui.monkeypatch.setattr(ui.runtime, "online_access", lambda: False)
        ui.monkeypatch.delenv(cls.url_env, raising=False)

    def online_off_local_service():
        online_off()
        ui.monkeypatch.setenv(cls.url_env, "http://127.0.0.1:9/")

    def prompt_and_points():
        form.image = ui.photo
        form.prompt = "chair"
        form.points = "10,20"

    def file_path_only():
        form.image = None
        form.image_path = ui.photo_file

    def earlier_job_cost():
        form.image = ui.photo
        job = ui.jobs.Job(cls.id, {}, job_id="earlier", label="earlier")
        job.state, job.cost = "imported", 0.08
        with ui.engine._lock:
            ui.engine._jobs[job.id] = job

    return [("no photo", no_photo), ("photo with points and boxes", photo_with_picks),
            ("keys missing", keys_missing), ("keys typed in preferences", keys_in_preferences),
            ("online access off", online_off),
            ("online access off, service on this machine", online_off_local_service),
            ("prompt and points given", prompt_and_points),
            ("photo as a file path", file_path_only),
            ("an earlier job with this model cost 0.08", earlier_job_cost)]


def _reset(ui, cls):
    form = bpy.context.scene.recon3d
    for name in ("image", "image_path", "points", "boxes", "prompt"):
        form.property_unset(name)
    prefs = importlib.import_module(f"{PKG}.addon.preferences").get()
    for key in cls.keys:
        prefs.property_unset(key.pref)
    ui.monkeypatch.undo()
    steady(ui.monkeypatch, ui.panels, ui.engine)
    with ui.engine._lock:
        ui.engine._jobs.pop("earlier", None)


def test_generate_panel_per_model_keys_and_online_access(ui):
    form = bpy.context.scene.recon3d
    with ui.engine._lock:                  # the last known cost comes from these only
        ui.engine._jobs.clear()
    for provider_id, cls in ui.registry.items():
        form.provider = provider_id
        sections = []
        for title, set_up in _generate_variants(ui, cls):
            set_up()
            text = draw_panel(ui.panels.RECON3D_PT_generate)
            poll = bpy.ops.recon3d.submit.poll()
            reason = ui.checks.submit_blocker(bpy.context)
            sections.append(f"== {title} (Generate {'enabled' if poll else 'greyed out'})\n"
                            f"{text}")
            # The button is greyed out exactly when the panel gives a reason.
            assert poll == (reason is None), (title, reason)
            _reset(ui, cls)
        text = "\n\n".join(sections)
        compare(f"generate__{provider_id}", text)
        assert "Key: missing" in text or any(k.label in text for k in cls.keys)


def test_generate_is_greyed_out_for_each_reason(ui):
    form = bpy.context.scene.recon3d
    form.provider = "scenario_pixal3d"
    cls = ui.registry["scenario_pixal3d"]
    form.image = None
    assert "Choose a photo" in ui.checks.submit_blocker(bpy.context)
    form.image = ui.photo
    assert ui.checks.submit_blocker(bpy.context) is None
    # A prompt left from another model is not sent, and said so; it does not block.
    form.prompt = "chair"
    assert ui.checks.submit_blocker(bpy.context) is None
    assert ui.checks.ignored_inputs(form) == ["the prompt"]
    assert ui.checks.job_arguments(form)["prompt"] is None
    form.prompt = ""
    # What the model would refuse blocks, in the model's own words.
    form.provider = "segmind_sam3d"
    form.boxes = "1,1,20,20; 2,2,30,30"
    assert "takes at most 1 box(es); 2 were given" in ui.checks.submit_blocker(bpy.context)
    form.boxes = ""
    form.points = "10,20; 30"
    assert "Each point must be written 'x,y'" in ui.checks.submit_blocker(bpy.context)
    form.points = ""
    form.provider = "scenario_pixal3d"
    _without_keys(ui, cls)
    assert "No Scenario API key and Scenario API secret is set" in \
        ui.checks.submit_blocker(bpy.context)
    assert not bpy.ops.recon3d.submit.poll()
    _reset(ui, cls)
    form.image = ui.photo
    # Options follow the model's declared rules, parameters added by name included.
    extra = form.extra_options.add()
    extra.name, extra.kind, extra.int_value = "ssSamplingSteps", "INT", 500
    assert "'ssSamplingSteps' must be between 1 and 100" in ui.checks.submit_blocker(bpy.context)
    extra.name = "SSSamplingSteps"          # a near miss of a declared name: a typo
    assert "did you mean 'ssSamplingSteps'?" in ui.checks.submit_blocker(bpy.context)
    extra.name = "image"                    # a field Recon3D sets itself
    assert "image is set by Recon3D itself" in ui.checks.submit_blocker(bpy.context)
    extra.name = "unknownParameter"         # any other name goes to the service as typed
    assert ui.checks.submit_blocker(bpy.context) is None
    form.extra_options.clear()
    assert ui.checks.submit_blocker(bpy.context) is None
    ui.monkeypatch.setattr(ui.runtime, "online_access", lambda: False)
    ui.monkeypatch.delenv(cls.url_env)
    assert "online access is off" in ui.checks.submit_blocker(bpy.context)
    _reset(ui, cls)


def test_advanced_panel_per_model(ui):
    form = bpy.context.scene.recon3d
    for provider_id in ui.registry:
        form.provider = provider_id
        plain = draw_panel(ui.panels.RECON3D_PT_advanced)
        bpy.ops.recon3d.extra_option_add()
        extra = form.extra_options[-1]
        extra.name, extra.kind, extra.float_value = "guidance", "FLOAT", 3.5
        with_extra = draw_panel(ui.panels.RECON3D_PT_advanced)
        assert bpy.ops.recon3d.extra_option_remove(index=len(form.extra_options) - 1) == \
            {"FINISHED"}
        assert len(form.extra_options) == 0
        compare(f"advanced__{provider_id}",
                f"== options\n{plain}\n\n== with an extra parameter\n{with_extra}")
        assert "float_value = 3.5" in with_extra


def test_jobs_panel_per_model_and_state(ui):
    form_module = importlib.import_module(f"{PKG}.addon.form")
    wm = bpy.context.window_manager
    with ui.engine._lock:
        ui.engine._jobs.clear()
    form_module.sync_job_list(wm, [])
    compare("jobs__none", draw_panel(ui.panels.RECON3D_PT_jobs))
    for provider_id in ui.registry:
        jobs = make_jobs(ui.jobs, provider_id, ui.photo_file)
        with ui.engine._lock:
            ui.engine._jobs.clear()
            ui.engine._jobs.update({job.id: job for job in jobs})
        form_module.sync_job_list(wm, ui.engine.jobs())
        listing = wm.recon3d_jobs
        assert [item.job_id for item in listing.items] == [j.id for j in reversed(jobs)]
        sections = []
        for show in ("ALL", "ACTIVE", "FINISHED"):
            listing.show = show
            for index, item in enumerate(listing.items):
                if show != "ALL" and index:
                    break              # the filter is shown once, with the newest selected
                listing.active = index
                job = ui.engine.get(item.job_id)
                sections.append(f"== show {show}, {job.state} job selected\n"
                                f"{draw_panel(ui.panels.RECON3D_PT_jobs)}")
        listing.show = "ALL"
        listing.active = 0
        compare(f"jobs__{provider_id}", "\n\n".join(sections))
        text = "\n\n".join(sections)
        assert "progress factor=0.4" in text and "operator recon3d.retry" in text
        # Each job's photo is loaded once as a preview (Blender fills its pixels lazily in
        # the UI; a background Blender leaves its icon empty, so the snapshot has none).
        assert {job.id for job in jobs} <= set(ui.panels.jobs._previews.keys())


def test_image_editor_panel(ui):
    compare("image_editor", draw_panel(ui.panels.RECON3D_PT_image_editor))


def test_recording_layout_refuses_what_blender_would(ui):
    """The recorder itself: each mistake a panel could make fails it."""
    form = bpy.context.scene.recon3d
    layout = RecordingLayout([])
    with pytest.raises(LayoutError, match="no property 'imagepath'"):
        layout.prop(form, "imagepath")
    with pytest.raises(LayoutError, match="not registered"):
        layout.operator("recon3d.no_such_thing")
    with pytest.raises(LayoutError, match="no property 'job'"):
        layout.operator("recon3d.cancel").job = "x"
    with pytest.raises(LayoutError, match="no function 'progres'"):
        layout.progres(factor=0.5)
    with pytest.raises(LayoutError, match="no parameter 'txt'"):
        layout.label(txt="hello")
    with pytest.raises(LayoutError, match="not one of Blender's values"):
        layout.label(text="hello", icon="NO_SUCH_ICON")
    with pytest.raises(LayoutError, match="no attribute 'activ'"):
        layout.activ = False


# -- operators through bpy.ops, against the emulator --------------------------------------------
def test_generate_from_a_generated_image_then_every_job_action(ui, emulator, fixtures):
    emulator.segmind.result = fixtures.glb("blob")
    main_thread = importlib.import_module(f"{PKG}.blender.main_thread")
    form = bpy.context.scene.recon3d
    form.provider = "segmind_sam3d"
    generated = bpy.data.images.new("generated photo", 80, 60)
    generated.generated_type = "UV_GRID"
    form.image = generated
    form.prompt = "chair"
    assert bpy.ops.recon3d.submit() == {"FINISHED"}
    job = ui.engine.jobs()[-1]
    assert job.label == "chair"
    assert job.wait(timeout=30).state in ("imported", "ready"), job.error
    assert wait_until(lambda: main_thread.drain() or job.state == "imported", timeout=10)
    assert job.state == "imported", job.error
    listing = bpy.context.window_manager.recon3d_jobs
    assert listing.items[0].job_id == job.id          # newest first
    assert ("ready" not in [s for _, s in main_thread._announced if _ == job.id]
            and (job.id, "imported") in main_thread._announced)

    for obj in bpy.context.view_layer.objects:
        obj.select_set(False)
    assert bpy.ops.recon3d.select_imported(job_id=job.id) == {"FINISHED"}
    assert sorted(o.name for o in bpy.context.selected_objects) == sorted(job.imported_objects)

    before = len(bpy.data.objects)
    assert bpy.ops.recon3d.import_job(job_id=job.id) == {"FINISHED"}     # import again
    assert len(bpy.data.objects) > before

    opened = []
    ui.monkeypatch.setattr(ui.operators, "open_folder", lambda filepath: opened.append(filepath))
    assert bpy.ops.recon3d.open_job_folder(job_id=job.id) == {"FINISHED"}
    assert opened == [ui.engine.job_dir(job)]

    copied = clipboard(ui)
    assert bpy.ops.recon3d.copy_job_text(job_id=job.id, what="REMOTE_ID") == {"FINISHED"}
    assert copied == [job.remote_id]
    with pytest.raises(RuntimeError, match="nothing to copy"):
        bpy.ops.recon3d.copy_job_text(job_id=job.id, what="ERROR")
    with pytest.raises(RuntimeError, match="no Recon3D job"):
        bpy.ops.recon3d.cancel(job_id="no-such-job")


def test_cancel_a_running_job_and_retry_a_failed_download(ui, emulator, fixtures, capfd):
    emulator.segmind.result = fixtures.glb("blob")
    from emulator import Reply
    main_thread = importlib.import_module(f"{PKG}.blender.main_thread")
    form = bpy.context.scene.recon3d
    form.provider = "segmind_sam3d"
    form.image = ui.photo
    emulator.fault("/status", Reply(200, {"status": "PROCESSING", "request_id": "x"}),
                   times=1000)
    assert bpy.ops.recon3d.submit() == {"FINISHED"}
    job = ui.engine.jobs()[-1]
    assert wait_until(lambda: job.state == "running", timeout=20), job.state
    assert bpy.ops.recon3d.cancel(job_id=job.id) == {"FINISHED"}
    assert job.wait(timeout=30).state == "canceled"
    emulator.reset()
    emulator.segmind.result = fixtures.glb("blob")

    # A result the CDN will not hand over: the job fails, paid for, and can be fetched again.
    cdn_fault = emulator.fault(lambda req: req.server == "cdn",
                               Reply(200, "<html><body>Access denied</body></html>",
                                     content_type="text/html"), times=10)
    form.prompt = "chair"
    assert bpy.ops.recon3d.submit() == {"FINISHED"}
    job = ui.engine.jobs()[-1]
    assert job.wait(timeout=30).state == "failed"
    capfd.readouterr()
    main_thread.drain()
    assert (job.id, "failed") in main_thread._announced
    assert f"Error: Recon3D: “chair” failed: {job.error}" in capfd.readouterr().out
    copied = clipboard(ui)
    assert bpy.ops.recon3d.copy_job_text(job_id=job.id, what="ERROR") == {"FINISHED"}
    assert copied == [job.error]
    text = draw_jobs_for(ui, job)
    if ui.engine.can_retry(job):
        assert "operator recon3d.retry" in text
        cdn_fault.times = cdn_fault.used          # the CDN hands it over now
        assert bpy.ops.recon3d.retry(job_id=job.id) == {"FINISHED"}
        assert job.wait(timeout=30).state in ("ready", "imported"), job.error
    else:
        assert "operator recon3d.retry" not in text, job.error_code


def clipboard(ui) -> list:
    """What the copy buttons put on the clipboard (headless Blender has none to read)."""
    copied = []
    ui.monkeypatch.setattr(ui.operators, "set_clipboard",
                           lambda context, text: copied.append(text))
    return copied


def draw_jobs_for(ui, job) -> str:
    listing = bpy.context.window_manager.recon3d_jobs
    importlib.import_module(f"{PKG}.addon.form").sync_job_list(bpy.context.window_manager,
                                                                 ui.engine.jobs())
    listing.active = [item.job_id for item in listing.items].index(job.id)
    return draw_panel(ui.panels.RECON3D_PT_jobs)


def _submit_and_wait(ui, image) -> object:
    form = bpy.context.scene.recon3d
    form.provider = "segmind_sam3d"
    form.image = image
    assert bpy.ops.recon3d.submit() == {"FINISHED"}
    job = ui.engine.jobs()[-1]
    assert job.wait(timeout=30).state in ("ready", "imported"), job.error
    return job


def test_generate_from_the_render_result_and_a_packed_image(ui, emulator, fixtures):
    """Done-when 4: the Render Result (no pixels Python can read) and a packed image whose
    file is gone both reach the service as the photo they show."""
    emulator.segmind.result = fixtures.glb("blob")
    scene = bpy.context.scene
    render_settings = (scene.render.engine, scene.render.resolution_x,
                       scene.render.resolution_y, scene.render.resolution_percentage)
    camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    scene.collection.objects.link(camera)
    scene.camera = camera
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.render.resolution_x, scene.render.resolution_y = 40, 30
    scene.render.resolution_percentage = 100
    bpy.ops.render.render()
    render = bpy.data.images["Render Result"]
    assert tuple(render.size) == (0, 0)      # why inputs must save it rather than read it
    job = _submit_and_wait(ui, render)
    assert job.inputs["image_size"] == [40, 30]
    assert job.label == "Render Result"
    (scene.render.engine, scene.render.resolution_x, scene.render.resolution_y,
     scene.render.resolution_percentage) = render_settings

    ui.photo.pack()
    os.remove(ui.photo_file)
    job = _submit_and_wait(ui, ui.photo)
    assert job.inputs["image_size"] == [64, 48]
    assert os.path.isfile(job.inputs["image_path"])


# -- preferences -------------------------------------------------------------------------------
def draw_preferences(ui) -> str:
    prefs_module = importlib.import_module(f"{PKG}.addon.preferences")
    assert prefs_module.draw_preferences is ui.panels.draw_preferences     # wired on register
    lines: list = []
    ui.panels.draw_preferences(prefs_module.get(), RecordingLayout(lines, 0, bpy.context),
                               bpy.context)
    return render(lines)


def test_preferences_show_key_sources_and_connection_tests(ui, emulator):
    connection = importlib.import_module(f"{PKG}.operators.connection")
    prefs = importlib.import_module(f"{PKG}.addon.preferences").get()
    PLACEHOLDERS[ui.runtime.data_dir()] = "<data folder>"
    ui.monkeypatch.setattr(ui.panels.preferences_page, "_folder_size", lambda folder: "1.0 MB")
    sections = [f"== keys from the environment\n{draw_preferences(ui)}"]

    def test(service):
        assert bpy.ops.recon3d.test_connection(service=service) == {"FINISHED"}
        thread = connection._threads.get(service)
        if thread is not None:
            thread.join(30)
            assert not thread.is_alive()
        return connection.result(service)

    # A good key, for every service: the probe costs nothing and creates no job.
    for service in {cls.service for cls in ui.registry.values()}:
        state, message = test(service)
        assert state == "ok", (service, message)
    assert not emulator.segmind.submits
    sections.append(f"== every service tested with a good key\n{draw_preferences(ui)}")

    # A bad key typed in the preferences wins over the environment's good one.
    prefs.segmind_api_key = "wrong-key"
    state, message = test("Segmind")
    assert state == "bad" and "key" in message.lower() and "wrong-key" not in message
    # No key at all.
    prefs.property_unset("segmind_api_key")
    ui.monkeypatch.delenv("SEGMIND_API_KEY")
    state, message = test("Segmind")
    assert state == "bad" and message.startswith("No Segmind API key is set."), message
    sections.append(f"== Segmind without a key\n{draw_preferences(ui)}")
    # An unreachable host (nothing listens on port 9).
    ui.monkeypatch.setenv("SEGMIND_API_KEY", "some-key")
    ui.monkeypatch.setenv("RECON3D_SEGMIND_URL", "http://127.0.0.1:9")
    state, message = test("Segmind")
    assert state == "bad" and "Segmind" in message, message
    sections.append(f"== Segmind unreachable\n{draw_preferences(ui)}")
    ui.monkeypatch.undo()
    compare("preferences", "\n\n".join(sections))


# -- the confirmations before files are deleted ---------------------------------------------
def draw_dialog(operator_cls, **values) -> str:
    """An operator's dialog as its draw() lays it out (headless Blender opens no dialog), with
    the operator's properties set to `values`; only properties it has may be drawn."""
    lines: list = []
    rna = _operator_type(operator_cls.bl_idname)
    assert set(values) <= set(rna.properties.keys())

    class Props:
        bl_rna = rna

        def __getattr__(self, name):         # the operator's methods, bound to these values
            return getattr(operator_cls, name).__get__(self)
    props = type(operator_cls.__name__, (Props,), {})()
    props.__dict__.update(values, layout=RecordingLayout(lines, 0, bpy.context))
    operator_cls.draw(props, bpy.context)
    return render(lines)


def test_removal_dialogs(ui):
    """What the artist is asked before a job's files are deleted (Remove, per finished state)
    and before old results are cleared."""
    removal_ops = importlib.import_module(f"{PKG}.operators.removal")
    removal = importlib.import_module(f"{PKG}.jobs.removal")
    jobs = make_jobs(ui.jobs, "segmind_sam3d", ui.photo_file)
    with ui.engine._lock:
        ui.engine._jobs.clear()
        ui.engine._jobs.update({job.id: job for job in jobs})
    sections = []
    for job in jobs:
        if job.state in ui.jobs.FINISHED:
            ui.monkeypatch.setitem(removal_ops._sizes, job.id, 2_400_000)
            sections.append(f"== Remove, {job.state} job\n"
                            f"{draw_dialog(removal_ops.RECON3D_OT_job_remove, job_id=job.id)}")
    # Forty days after they finished: all four finished jobs are old.
    ui.monkeypatch.setattr(removal, "clock", lambda: T0 + 40 * removal.DAY)
    for days, include_ready in ((30, False), (30, True), (60, False)):
        text = draw_dialog(removal_ops.RECON3D_OT_clear_old_results, days=days,
                           include_ready=include_ready)
        sections.append(f"== Clear Old Results, {days} days, results never imported "
                        f"{'included' if include_ready else 'kept'}\n{text}")
    text = "\n\n".join(sections)
    compare("removal_dialogs", text)
    # the failed job's result can still be fetched (Retry): a paid result kept like "ready"
    assert "Deletes 2 finished jobs older than 30 days, freeing 4.8 MB." in text
    assert "2 old results never imported are kept" in text
    assert "Deletes 4 finished jobs older than 30 days, freeing 9.6 MB." in text
    assert "No finished job is older than 60 days" in text


# -- the picker ----------------------------------------------------------------------------------
class FakeView:
    """An Image Editor view: the 256×128 photo shown at 2× zoom, its top-left corner at
    screen (50, 260) (screen y grows upwards, photo y downwards); sizes are powers of two,
    so the arithmetic is exact."""
    zoom, left, top, width, height = 2.0, 50.0, 260.0, 256, 128

    def to_pixels(self, x, y):
        picker = importlib.import_module(f"{PKG}.operators.picker")
        u = (x - self.left) / (self.width * self.zoom)
        v = 1.0 - (self.top - y) / (self.height * self.zoom)
        return picker.view_to_pixels(u, v, self.width, self.height)

    def to_screen(self, x, y):
        picker = importlib.import_module(f"{PKG}.operators.picker")
        u, v = picker.pixels_to_view(x, y, self.width, self.height)
        return (self.left + u * self.width * self.zoom,
                self.top - (1.0 - v) * self.height * self.zoom)


def test_picker_turns_synthetic_events_into_points_and_boxes(recon3d):
    picker = importlib.import_module(f"{PKG}.operators.picker")
    view = FakeView()
    picks = picker.Picks(points=[(10.0, 10.0)])            # an existing pick is kept

    def send(kind, value, x, y):
        return picker.handle(picks, kind, value, (x, y), view.to_pixels, view.to_screen)

    assert send("MOUSEMOVE", "NOTHING", 60, 200) == "pass"          # hover: zoom/pan work
    assert send("WHEELUPMOUSE", "PRESS", 60, 200) == "pass"
    # A click at photo pixel (50, 20): screen (50 + 100, 260 - 40).
    assert send("LEFTMOUSE", "PRESS", 150, 220) == "running"
    assert send("LEFTMOUSE", "RELEASE", 152, 221) == "running"     # moved < 6 px: a click
    assert picks.points == [(10.0, 10.0), (50.0, 20.0)]
    # A drag from pixel (150, 80) up-left to pixel (100, 30): a box, corners ordered.
    send("LEFTMOUSE", "PRESS", 350, 100)
    send("MOUSEMOVE", "NOTHING", 300, 150)
    assert picks.current == (125.0, 55.0)
    lines, labels = picker.geometry(picks, view.to_screen)
    assert len(lines) == 2 * 4 + 8 and [t for _, t in labels] == ["1", "2"]   # drag: no number
    send("LEFTMOUSE", "RELEASE", 250, 200)
    assert picks.boxes == [(100.0, 30.0, 150.0, 80.0)]
    lines, labels = picker.geometry(picks, view.to_screen)
    assert [t for _, t in labels] == ["1", "2", "box 1"]
    assert lines[-8] == view.to_screen(100.0, 30.0)
    # Outside the photo: clamped onto its last pixel.
    send("LEFTMOUSE", "PRESS", 900, -40)
    send("LEFTMOUSE", "RELEASE", 900, -40)
    assert picks.points[-1] == (255.0, 127.0)
    # Backspace removes the last pick, whatever its kind.
    assert send("BACK_SPACE", "PRESS", 0, 0) == "running"
    assert picks.points == [(10.0, 10.0), (50.0, 20.0)] and len(picks.boxes) == 1
    send("BACK_SPACE", "PRESS", 0, 0)
    assert picks.boxes == []
    # Right-click removes the nearest pick within reach, and nothing farther away.
    send("LEFTMOUSE", "PRESS", 350, 100)
    send("LEFTMOUSE", "RELEASE", 250, 200)
    assert send("RIGHTMOUSE", "PRESS", 600, 10) == "running" and len(picks.points) == 2 \
        and len(picks.boxes) == 1
    send("RIGHTMOUSE", "PRESS", 153, 223)                # next to point 2
    assert picks.points == [(10.0, 10.0)]
    send("RIGHTMOUSE", "PRESS", 262, 150)                # inside the box, near its left edge
    assert picks.boxes == []
    assert send("RET", "PRESS", 0, 0) == "keep" and send("ESC", "PRESS", 0, 0) == "cancel"
    # What Enter writes reads back as the same picks.
    form = bpy.context.scene.recon3d
    form.points = picker.format_points([(10, 10), (50.4, 20.6)])
    form.boxes = picker.format_boxes([(100, 30, 150, 80)])
    assert form.parsed_points() == [(10.0, 10.0), (50.0, 21.0)]
    assert form.parsed_boxes() == [(100.0, 30.0, 150.0, 80.0)]


def test_picker_drawing_and_its_handlers(recon3d):
    picker = importlib.import_module(f"{PKG}.operators.picker")
    picks = picker.Picks(points=[(10.0, 10.0)], boxes=[(1.0, 2.0, 30.0, 40.0)])
    lines, labels = picker.geometry(picks, FakeView().to_screen)
    import gpu
    if bpy.app.background and hasattr(gpu, "init"):
        gpu.init()          # 5.2's bpy module can draw offscreen once the GPU is initialised
    if bpy.app.background and not hasattr(gpu, "init"):
        # Before 5.2 the bpy module has no GPU context: drawing stops at the first GPU call,
        # with Blender's own reason (so the drawing code itself cannot run here).
        with pytest.raises(SystemError, match="not available in background mode"):
            picker.draw_geometry(lines, labels, (400, 300))
    else:
        # The drawing code runs through (shaders built, batches drawn) on a real GPU API;
        # EGL's headless context here gives no pixels to compare, so none are read.
        offscreen = gpu.types.GPUOffScreen(400, 300)
        try:
            with offscreen.bind():
                picker.draw_geometry(lines, labels, (400, 300))
        finally:
            offscreen.free()
    # Every exit removes the draw handler once; disabling the extension removes the rest.
    handle = bpy.types.SpaceImageEditor.draw_handler_add(lambda: None, (), "WINDOW",
                                                        "POST_PIXEL")
    picker._handles.add(handle)
    picker.unregister()
    assert not picker._handles
    picker.remove_handler(handle)                        # a second exit: nothing left to do
    # Without an Image Editor showing a photo, the picker explains why it is greyed out.
    assert not bpy.ops.recon3d.pick_prompts.poll()


def test_ask_the_price_where_the_service_can_tell(ui, emulator):
    """Where a provider prices a job beforehand (it overrides `estimate`, and the API offers
    api.estimate), the panel offers Ask the Price and shows the answer for this very job;
    elsewhere it shows nothing but the last known cost."""
    api = importlib.import_module(f"{PKG}.api")
    form = bpy.context.scene.recon3d
    form.provider, form.image = "scenario_sam3d", ui.photo
    cls = ui.registry["scenario_sam3d"]
    asked = []
    ui.monkeypatch.setattr(cls, "estimate", lambda self, inputs: asked.append(
        (threading.current_thread().name, inputs.image_size, inputs.prompt)) or 12.0,
        raising=False)
    before = draw_panel(ui.panels.RECON3D_PT_generate)
    assert "label text='Price not asked yet' icon='FUND'" in before
    assert bpy.ops.recon3d.estimate_cost() == {"FINISHED"}
    ui.operators.price_threads[-1].join(10)
    # The network part ran on a thread of its own, never on Blender's main thread.
    assert asked == [("recon3d-price", tuple(ui.photo.size), None)]
    assert "label text='Costs 12.0' icon='FUND'" in draw_panel(ui.panels.RECON3D_PT_generate)
    form.prompt = "chair"                                  # another job: not priced yet
    assert "Price not asked yet" in draw_panel(ui.panels.RECON3D_PT_generate)
    form.provider = "segmind_sam3d"                        # Segmind cannot price beforehand
    assert "recon3d.estimate_cost" not in draw_panel(ui.panels.RECON3D_PT_generate)
    assert not bpy.ops.recon3d.estimate_cost.poll()
    _reset(ui, cls)


def test_notify_reports_in_the_status_bar(recon3d, capfd):
    """A background Blender prints the reports the status bar and Info log would show."""
    assert bpy.ops.recon3d.notify(message="Recon3D: “chair” is ready to import.",
                                  level="WARNING") == {"FINISHED"}
    assert "Warning: Recon3D: “chair” is ready to import." in capfd.readouterr().out


def test_jobs_from_the_journal_are_listed_without_an_event(ui):
    """After a restart the journal's finished jobs send no event; the first tick lists them."""
    main_thread = importlib.import_module(f"{PKG}.blender.main_thread")
    form_module = importlib.import_module(f"{PKG}.addon.form")
    wm = bpy.context.window_manager
    form_module.sync_job_list(wm, [])
    jobs = make_jobs(ui.jobs, "segmind_sam3d", ui.photo_file)
    with ui.engine._lock:
        ui.engine._jobs.update({job.id: job for job in jobs})
    assert len(wm.recon3d_jobs.items) == 0
    main_thread.drain()
    listed = [item.job_id for item in wm.recon3d_jobs.items]
    assert listed[:len(jobs)] == [job.id for job in reversed(jobs)]


def test_a_job_running_in_another_blender_offers_no_actions(ui):
    """A job another Blender (sharing the data folder) runs: where it runs, and no buttons."""
    ownership = importlib.import_module(f"{PKG}.jobs.ownership")
    form_module = importlib.import_module(f"{PKG}.addon.form")
    job = make_jobs(ui.jobs, "segmind_sam3d", ui.photo_file)[2]          # running, 40 %
    job.owner = ownership.OwnerInfo(pid=4711, host=ownership._HOST,
                                    label="Blender 4.2 (GUI)", since=T0, claimed_at=T0,
                                    token="other")
    with ui.engine._lock:
        ui.engine._jobs.clear()
        ui.engine._jobs[job.id] = job
    form_module.sync_job_list(bpy.context.window_manager, [job])
    text = draw_panel(ui.panels.RECON3D_PT_jobs)
    compare("jobs__in_another_blender", text)
    assert "Blender 4.2 (GUI), process 4711" in text and "operator" not in text
