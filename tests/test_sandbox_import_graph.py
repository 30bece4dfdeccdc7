"""No import circles through the sandbox package or the embedded-model modules.

Every import counts: module top, inside a function and under ``if TYPE_CHECKING:``. The executor's
helpers (calls, probe, session) get a ``SlotAccess`` and never import the executor; ``models`` and
``smollm2`` share ``model_cache`` instead of importing each other.
"""
from __future__ import annotations

import ast
from pathlib import Path

import aletheia_ray

PACKAGE_DIR = Path(aletheia_ray.__file__).parent
OWN = ("aletheia_ray.sandbox", "aletheia_ray.models", "aletheia_ray.smollm2",
       "aletheia_ray.model_cache")


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        mod = ".".join(parts).removesuffix(".__init__")
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps.add(node.module)
                deps.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[mod] = deps
    return {m: {d for d in ds if d in graph and d != m} for m, ds in graph.items()}


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in graph[todo.pop()]:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_no_import_cycle_through_sandbox_or_model_modules():
    # whole-package graph, so a circle through a module outside OWN is caught as well
    graph = import_graph()
    circles = {m: sorted(d for d in graph[m] if m in reachable(graph, d))
               for m in graph if m.startswith(OWN)}
    bad = {m: back for m, back in circles.items() if back}
    assert not bad, f"imports that lead back to the importer: {bad}"


def test_executor_helpers_do_not_import_the_executor():
    graph = import_graph()
    for helper in ("calls", "probe", "session", "slot_access", "run_outcome"):
        assert "aletheia_ray.sandbox.executor" not in graph[f"aletheia_ray.sandbox.{helper}"]
    assert "aletheia_ray.models" not in graph["aletheia_ray.smollm2"]
