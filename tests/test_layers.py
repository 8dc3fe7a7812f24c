# SPDX-License-Identifier: GPL-3.0-or-later
"""The package's shape: providers/ and jobs/ are bpy-free (they import and work without bpy),
no module imports another that imports it back (directly or round a longer circle), and
every error code Recon3D raises is one of the table's in errors.py."""
from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import ROOT, SESSION_DIR

PACKAGE_DIRS = ("", "providers", "jobs", "blender", "blender/importer", "addon", "operators",
                "panels")
BPY_FREE = ("providers", "jobs", "errors")
BLENDER_MODULES = {"bpy", "mathutils", "gpu", "gpu_extras", "bmesh", "addon_utils", "bl_ui"}


def package_modules(root: Path = ROOT) -> dict[str, Path]:
    """'providers.http' -> path, for every module of the extension (tests, bench, tools
    aside)."""
    found = {}
    for folder in PACKAGE_DIRS:
        for path in sorted((root / folder).glob("*.py")):
            parts = [p for p in folder.split("/") if p]
            if path.stem != "__init__":
                parts.append(path.stem)
            found[".".join(parts) or "__init__"] = path
    return found


def imports_of(name: str, path: Path, modules: dict) -> tuple[set[str], set[str]]:
    """(package modules this module imports at any depth of its code, top-level names of
    outside modules it imports)."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    if name == "__init__":
        package = ""
    inside, outside = set(), set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            outside.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if not node.level:
                outside.add((node.module or "").split(".")[0])
                continue
            base = package.split(".") if package else []
            base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{target}.{alias.name}" if target else alias.name
                if full in modules:                 # a submodule
                    inside.add(full)
                else:                               # a name defined in the package itself
                    inside.add(target or "__init__")
    inside.discard(name)
    return inside, outside


def import_graph(root: Path = ROOT):
    modules = package_modules(root)
    graph, outside = {}, {}
    for name, path in modules.items():
        graph[name], outside[name] = imports_of(name, path, modules)
    return graph, outside


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_circles():
    graph, _ = import_graph()
    assert len(graph) > 30            # the walk really saw the package
    # Every edge counts: a package importing its submodules is an edge like any other, and
    # a submodule importing a name its package defines leads back up (imports_of tells the
    # two apart), so a circle through an __init__ is found too.
    edges = graph
    cycle = find_cycle(edges)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_circle_finder_finds_circles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_bpy_free_layers_import_no_blender_module():
    graph, outside = import_graph()
    for name in graph:
        if name.split(".")[0] in BPY_FREE:
            assert not outside[name] & BLENDER_MODULES, f"{name} imports {outside[name]}"
            for inner in graph[name]:
                assert inner.split(".")[0] in BPY_FREE, f"{name} imports {inner}"


def test_every_error_code_used_is_in_the_table(recon3d):
    codes = recon3d.errors.CODES
    used = set()
    for path in package_modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg in ("code", "error_code") and \
                    isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                used.add(node.value.value)
            if isinstance(node, ast.ClassDef):
                for stmt in node.body:
                    if isinstance(stmt, ast.Assign) and any(
                            getattr(t, "id", "") == "code" for t in stmt.targets) and \
                            isinstance(stmt.value, ast.Constant):
                        used.add(stmt.value.value)
    assert len(used) > 15
    assert used <= set(codes), used - set(codes)


def test_providers_and_jobs_import_without_bpy(recon3d):
    ext_dir = SESSION_DIR / "repo" / "recon3d"
    code = textwrap.dedent(f"""
        import sys, types
        # Mount the installed extension as a plain package without running its __init__
        # (which registers Blender classes), then import the bpy-free layers.
        pkg = types.ModuleType("r3d")
        pkg.__path__ = [{str(ext_dir)!r}]
        sys.modules["r3d"] = pkg
        import pkgutil, importlib
        import r3d.providers, r3d.jobs, r3d.errors
        for layer in (r3d.providers, r3d.jobs):
            for info in pkgutil.iter_modules(layer.__path__):
                importlib.import_module(layer.__name__ + "." + info.name)
        from r3d.providers import REGISTRY
        from r3d.jobs import Engine, Job
        assert "segmind_sam3d" in REGISTRY
        job = Job("segmind_sam3d", {{}})
        assert job.wait(timeout=0.01).state == "queued"
        print("BPY_LOADED" if "bpy" in sys.modules else "BPY_FREE")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("BPY_FREE")
