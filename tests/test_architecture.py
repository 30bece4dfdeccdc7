"""The house's rules, checked: the library never imports Ray, no module imports one that imports it
back, everything is imported under the ``aletheia_ray`` namespace, and the controller, config and
actors never branch on a task's name (the task protocol answers instead).

The import graph counts every import: module top, inside a function and under ``if TYPE_CHECKING:``.
The Ray layer (``actors/``) and the entry points (``launch/``) are installed as ``aletheia_ray.actors``
and ``aletheia_ray.launch`` (setup.py ``package_dir``), so they are graphed under those names.
"""
from __future__ import annotations

import ast
import graphlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# source folder -> installed package name
PACKAGES = {REPO / "aletheia_ray": "aletheia_ray", REPO / "actors": "aletheia_ray.actors",
            REPO / "launch": "aletheia_ray.launch"}
RAY_LAYER = ("aletheia_ray.actors", "aletheia_ray.launch")
NOT_MODULES = ("aletheia_ray.sandbox.harness",)  # scripts run inside the sandbox, not imported


def module_files() -> dict[str, Path]:
    out = {}
    for folder, package in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            if not name.startswith(NOT_MODULES):
                out[name] = path
    return out


def imported_names(name: str, path: Path) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    deps = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            deps.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            deps.add(base)
            deps.update(f"{base}.{a.name}" for a in node.names)
    return deps


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    graph = {name: imported_names(name, path) for name, path in files.items()}
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def test_no_import_circles():
    graph = import_graph()
    assert len(graph) > 100 and "aletheia_ray.actors.controller" in graph
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as e:
        pytest.fail(f"import circle: {' -> '.join(e.args[1])}")


def test_the_cycle_check_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    with pytest.raises(graphlib.CycleError):
        list(graphlib.TopologicalSorter(graph).static_order())


def test_the_library_never_imports_the_ray_layer():
    graph = import_graph()
    library = [m for m in graph if not m.startswith(RAY_LAYER)]
    bad = {m: sorted(d for d in graph[m] if d.startswith(RAY_LAYER)) for m in library}
    assert not {m: d for m, d in bad.items() if d}


def test_importing_every_library_module_loads_no_ray():
    """A fresh interpreter imports every library module (all of aletheia_ray but the Ray layer)."""
    names = sorted(m for m in module_files() if not m.startswith(RAY_LAYER))
    code = ("import importlib, json, sys\n"
            f"names = {names!r}\n"
            "for n in names: importlib.import_module(n)\n"
            "print(json.dumps({'imported': len(names), 'ray': sorted(m for m in sys.modules if m == 'ray' or "
            "m.startswith('ray.')), 'layer': sorted(m for m in sys.modules if m.startswith(('aletheia_ray.actors', "
            "'aletheia_ray.launch')))}))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["imported"] == len(names) > 80
    assert result["ray"] == [] and result["layer"] == []


def test_ray_layer_and_entry_points_import_under_the_package_namespace():
    top_level = re.compile(r"^\s*(from|import)\s+(actors|launch)(\.|\s|$)", re.M)
    offenders = [str(p.relative_to(REPO)) for folder in (*PACKAGES, REPO / "tests", REPO / "benchmarks")
                 for p in folder.rglob("*.py") if top_level.search(p.read_text())]
    assert offenders == []
    import aletheia_ray.actors.controller as controller
    import aletheia_ray.launch.train as train

    assert Path(controller.__file__).parent == REPO / "actors" and Path(train.__file__).parent == REPO / "launch"


def test_no_task_name_branches_in_controller_config_or_actors():
    """``if kind == "codegen"``-style branches are what the task protocol replaces."""
    pattern = re.compile(r"""(kind|data\.kind)\s*(==|!=|in)\s*\(?["'](lists|synthetic|pairs|codegen|verdict|pass_rate)""")
    files = [REPO / "aletheia_ray" / "train_config.py", *(REPO / "actors").rglob("*.py")]
    hits = [f"{p.relative_to(REPO)}:{i}" for p in files for i, line in enumerate(p.read_text().splitlines(), 1)
            if pattern.search(line)]
    assert hits == []


def test_a_bare_source_checkout_resolves_the_ray_layer_without_the_installer(tmp_path):
    """A Ray job's uploaded working_dir: only the checkout on sys.path, no site-packages (``-S``), so
    no editable-install finder: ``aletheia_ray.actors`` / ``.launch`` still come from the checkout."""
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); import aletheia_ray.actors, aletheia_ray.launch; "
            "print(aletheia_ray.actors.__file__); print(aletheia_ray.launch.__file__)")
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(REPO / "actors" / "__init__.py"), str(REPO / "launch" / "__init__.py")]
