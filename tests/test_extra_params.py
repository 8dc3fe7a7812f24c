# SPDX-License-Identifier: GPL-3.0-or-later
"""Extra parameters by name and typed value: declared options are checked against their
declaration; any other name reaches the service's request body as typed (where each service's
official SDK puts its parameters: the top level of Segmind's and Scenario's JSON body, of
Runware's task object, of fal's input), except fields Recon3D sets itself, which are refused
before anything is uploaded."""
from __future__ import annotations

import importlib
import logging

import pytest

from conftest import PKG
from test_providers import serve

#: an extra parameter of each JSON type, names no service documents (a typo, say)
EXTRAS = {"r3dCount": 3, "r3dFlag": True, "r3dStyle": "studio"}
PROMPTED = {"segmind_sam3d": {"prompt": "chair"}, "scenario_sam3d": {"prompt": "chair"},
            "runware_sam3d": {"prompt": "chair"}, "fal_sam3d": {"prompt": "chair"},
            "fal_hunyuan3d": {}}
#: how each service, as emulated from its documentation, answers a name it does not know
REFUSAL = {"segmind_sam3d": None,                              # Segmind ignores it
           "scenario_sam3d": "Unknown parameters",
           "runware_sam3d": "Additional properties are not allowed",
           "fal_sam3d": "extra fields not permitted"}


def submitted(emulator, provider: str) -> dict:
    """The body of the request that started the job (Runware: its task object)."""
    if provider == "runware_sam3d":
        return [r for r in emulator.requests(contains="/runware/")
                if b'"3dInference"' in r.body][0].json[0]
    path = {"segmind_sam3d": "/segmind/v2/sam-3d-objects",
            "scenario_sam3d": "/generate/custom/"}.get(provider, "/fal/fal-ai/")
    return emulator.requests(contains=path, method="POST")[0].json


def run(api, emulator, fixtures, provider: str, options: dict):
    glb = fixtures.glb("blob")
    if provider.startswith("fal"):
        emulator.fal.results = [glb]
    else:
        serve(emulator, provider, [glb])
    try:
        return api.reconstruct(fixtures.path("photo.png"), provider=provider, options=options,
                               timeout=60, **PROMPTED[provider])
    except api.Recon3DError as exc:
        return exc


@pytest.mark.parametrize("provider", list(REFUSAL))
def test_extra_parameters_reach_the_body_with_their_json_types(api, emulator, fixtures,
                                                               provider, caplog):
    with caplog.at_level(logging.WARNING):
        outcome = run(api, emulator, fixtures, provider, dict(EXTRAS))
    body = submitted(emulator, provider)
    for name, value in EXTRAS.items():
        assert name in body and body[name] == value and type(body[name]) is type(value)
    # The job says what it sent unchecked, once.
    told = [r.getMessage() for r in caplog.records if "unchecked" in r.getMessage()]
    assert len(told) == 1 and 'r3dCount=3, r3dFlag=true, r3dStyle="studio"' in told[0]
    if REFUSAL[provider] is None:
        assert isinstance(outcome, list) and outcome, outcome
    else:   # the service refuses a name it does not know: the artist reads why
        assert isinstance(outcome, Exception), outcome
        assert REFUSAL[provider] in str(outcome) and "r3d" in str(outcome)


@pytest.mark.parametrize("provider, options", [
    ("runware_sam3d", {"ttl": 3600}),                                   # documented, an int
    ("fal_hunyuan3d", {"generate_type": "LowPoly", "generate_pbr": True}),
])
def test_documented_parameters_recon3d_does_not_list_work_end_to_end(api, emulator, fixtures,
                                                                      provider, options):
    objects = run(api, emulator, fixtures, provider, options)
    assert isinstance(objects, list) and objects, objects
    body = submitted(emulator, provider)
    assert {k: body[k] for k in options} == options
    assert all(type(body[k]) is type(v) for k, v in options.items())


@pytest.mark.parametrize("provider, name, field", [
    ("segmind_sam3d", "image", "use the Photo field instead"),
    ("segmind_sam3d", "Seed", "use the Seed field instead"),
    ("scenario_sam3d", "pointPrompts", "use the Points field instead"),
    ("scenario_pixal3d", "image", "use the Photo field instead"),
    ("runware_sam3d", "taskUUID", "it cannot be changed"),
    ("runware_sam3d", "webhookURL", "it cannot be changed"),
    ("fal_sam3d", "mask_urls", "use the Mask field instead"),
    ("fal_hunyuan3d", "input_image_url", "use the Photo field instead"),
])
def test_a_field_recon3d_sets_is_refused_before_anything_is_uploaded(api, emulator, fixtures,
                                                                     provider, name, field):
    with pytest.raises(api.Recon3DError) as refused:
        api.submit(fixtures.path("photo.png"), provider=provider, options={name: "x"},
                   **PROMPTED.get(provider, {}))
    assert str(refused.value).startswith(f"{name} is set by Recon3D itself")
    assert str(refused.value).endswith(f"; {field}.") and refused.value.code == "input"
    assert emulator.requests() == []


@pytest.mark.parametrize("provider, options, says", [
    ("scenario_pixal3d", {"ssSamplingSteps": 500}, "must be between 1 and 100"),
    ("runware_sam3d", {"numberResults": 9}, "must be between 1 and 4"),
    ("fal_hunyuan3d", {"face_count": 1.5}, "must be a whole number"),
    ("segmind_sam3d", {"include_artifacts": "yes"}, "must be true or false"),
    ("scenario_pixal3d", {"SSSamplingSteps": 20}, "did you mean 'ssSamplingSteps'?"),
    ("fal_sam3d", {"detectionThreshold": 0.4}, "did you mean 'detection_threshold'?"),
    ("segmind_sam3d", {"r3dCount": float("nan")}, "must be text, a number"),
])
def test_declared_options_are_still_checked(api, emulator, fixtures, provider, options, says):
    with pytest.raises(api.Recon3DError) as refused:
        api.submit(fixtures.path("photo.png"), provider=provider, options=options,
                   **PROMPTED.get(provider, {}))
    assert says in str(refused.value)
    assert emulator.requests() == []


def test_the_command_line_reads_json_values_and_says_what_it_sends_unchecked(
        recon3d, emulator, fixtures, capsys):
    cli = importlib.import_module(f"{PKG}.cli")
    emulator.segmind.result = fixtures.glb("blob")
    assert cli.main(["generate", fixtures.path("photo.png"), "--prompt", "cup",
                     "--option", "r3dCount=3", "--option", "r3dFlag=true",
                     "--option", "r3dStyle=studio", "--option", 'r3dQuoted="7"',
                     "--option", "r3dList=[1, 2.5]", "--option",
                     "include_artifacts=false"]) == 0
    err = capsys.readouterr().err
    assert ('sent unchecked (not among the options Recon3D knows for segmind_sam3d; the '
            'service decides): r3dCount=3, r3dFlag=true, r3dStyle="studio", r3dQuoted="7", '
            'r3dList=[1, 2.5]') in err
    body = emulator.segmind.submits[0].json
    assert (body["r3dCount"], body["r3dFlag"], body["r3dStyle"], body["r3dQuoted"],
            body["r3dList"], body["include_artifacts"]) == (3, True, "studio", "7", [1, 2.5],
                                                           False)
    assert type(body["r3dCount"]) is int and type(body["r3dList"][1]) is float


def body_with_every_input(provider, fixtures) -> dict:
    """What `provider` writes into its request when every input it takes is given."""
    providers = importlib.import_module(f"{PKG}.providers")
    cls = providers.provider_class(provider)
    caps = cls.capabilities
    photo = fixtures.path("photo.png")
    inputs = providers.JobInputs(
        image_path=photo, image_size=(64, 48), prompt="chair" if caps.prompt else None,
        mask_paths=[photo] if caps.mask else [], points=[(4, 4)] if caps.points else [],
        boxes=[(1, 1, 9, 9)] if caps.boxes else [], seed=1 if caps.seed else None)
    made = providers.make_provider(provider, providers.ProviderSettings("http://127.0.0.1:9",
                                                                        {}))
    if provider == "segmind_sam3d":
        return made.build_payload(inputs)
    if provider.startswith("scenario"):
        return made.request_body(inputs, {"image_asset": "asset_1", "mask_assets": ["asset_2"]})
    if provider == "runware_sam3d":
        return made.build_task(inputs, "task-1")
    return made.build_payload(inputs, "data:image/png;base64,AA", ["data:image/png;base64,AA"])


@pytest.mark.parametrize("provider", ["segmind_sam3d", "scenario_sam3d", "scenario_pixal3d",
                                      "runware_sam3d", "fal_sam3d", "fal_pixal3d",
                                      "fal_hunyuan3d"])
def test_every_field_a_provider_writes_itself_is_reserved(recon3d, fixtures, provider):
    """The reserved list and the body builder beside it agree: an extra parameter can never
    overwrite a field Recon3D sets (declared options aside, which are checked)."""
    cls = importlib.import_module(f"{PKG}.providers").provider_class(provider)
    written = set(body_with_every_input(provider, fixtures)) - {o.name for o in cls.options}
    assert written and written <= set(cls.reserved_params()), \
        written - set(cls.reserved_params())


@pytest.mark.parametrize("written, value", [
    ("True", True), ("FALSE", False), (" true ", True), ("1e3", 1000), ("2E2", 200),
    ("50000", 50000), ("1.0", 1.0), ("1e-3", 0.001), ("2.5e1", 25.0), ("[1e3, 1.5]", [1000, 1.5]),
    ('"True"', "True"), ("studio", "studio"), ("NaN", "NaN"), ("1e999", "1e999"),
    ("null", None)])
def test_command_line_option_values(recon3d, written, value):
    """true/false in any case are booleans (as before JSON reading); a whole number written
    without a decimal point is an integer even with an exponent; the rest is JSON or text."""
    name, parsed = importlib.import_module(f"{PKG}.cli")._option(f"r3dValue={written}")
    assert name == "r3dValue" and parsed == value and type(parsed) is type(value)
    if isinstance(value, list):
        assert [type(v) for v in parsed] == [int, float]
