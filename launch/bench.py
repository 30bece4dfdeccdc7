"""``aletheia-bench``: run a benchmark script of ``benchmarks/`` by name.

    aletheia-bench list                       # available benchmarks with their one-line summary
    aletheia-bench sandbox_throughput [ARGS]  # runs benchmarks/sandbox_throughput.py ARGS
    aletheia-bench all [--quick]              # e2e_vs_trl, rollout_vs_hf, sync_bandwidth, bf16_autocast -> docs/benchmarks.md

The script replaces this process (``os.execv``), so its exit code, output and Ctrl-C behave as
if it had been started with ``python benchmarks/NAME.py``; the repository root is put on
``PYTHONPATH`` so scripts can import ``aletheia_ray``, ``actors`` and ``benchmarks.*``.
``ALETHEIA_BENCHMARKS_DIR`` points at another directory of scripts (e.g. a non-editable install).
A script is any ``*.py`` in that directory not starting with ``_``; its summary is the first
paragraph of its module docstring (read with ``ast``, without importing it).

``all`` (``make bench``) runs ``ALL`` one after the other, each as
``NAME --json docs/bench/NAME.json`` (with ``--quick``: each benchmark's smoke settings,
``QUICK_ARGS``), streaming and capturing their output, records the runs in ``docs/bench/all.json``
and renders ``docs/benchmarks.md`` from it with ``benchmarks/_report.py``. Paths are relative to
the directory above the benchmarks directory (the repository root). Exit code 1 if any failed.
"""
from __future__ import annotations

import argparse
import ast
import difflib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional, Sequence

USAGE = ("usage: aletheia-bench NAME [ARGS...] | aletheia-bench all [--quick] | aletheia-bench list | "
         "aletheia-bench --help")
ALL = ("e2e_vs_trl", "rollout_vs_hf", "sync_bandwidth", "bf16_autocast")  # `aletheia-bench all`, in this order
QUICK_ARGS = {"e2e_vs_trl": ["--reps", "1", "--steps", "3"],  # smoke settings; the others take --quick
              "bf16_autocast": ["--reps", "1", "--models", "tiny-qwen2-bench"]}
REPORT_SCRIPT = "_report.py"


def benchmarks_dir() -> Path:
    """``$ALETHEIA_BENCHMARKS_DIR`` or ``benchmarks/`` beside the ``launch`` package."""
    configured = os.environ.get("ALETHEIA_BENCHMARKS_DIR")
    path = Path(configured) if configured else Path(__file__).resolve().parent.parent / "benchmarks"
    if not path.is_dir():
        raise FileNotFoundError(
            f"benchmarks directory {path} does not exist (install from a source checkout with "
            "`pip install -e .`, or set ALETHEIA_BENCHMARKS_DIR)")
    return path


def available(directory: Path) -> dict[str, Path]:
    """Benchmark name -> script path, sorted by name."""
    return {p.stem: p for p in sorted(directory.glob("*.py")) if not p.name.startswith("_")}


def summary(script: Path) -> str:
    """First docstring paragraph of a script on one line, or a note saying why there is none."""
    try:
        doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"), filename=str(script)))
    except (SyntaxError, UnicodeDecodeError) as exc:
        return f"(cannot read docstring: {type(exc).__name__})"
    if not doc or not doc.strip():
        return "(no docstring)"
    return " ".join(doc.strip().split("\n\n")[0].split())


def format_listing(directory: Path) -> str:
    scripts = available(directory)
    if not scripts:
        return f"no benchmarks in {directory}"
    width = max(len(name) for name in scripts)
    lines = [f"benchmarks in {directory}:"]
    lines += [f"  {name:<{width}}  {summary(path)}" for name, path in scripts.items()]
    return "\n".join(lines)


def resolve(name: str, directory: Path) -> Path:
    """The script for ``name`` (``foo`` or ``foo.py``); an unknown name lists close matches."""
    scripts = available(directory)
    stem = name[:-3] if name.endswith(".py") else name
    if stem in scripts:
        return scripts[stem]
    close = difflib.get_close_matches(stem, scripts, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    known = ", ".join(scripts) or "none"
    raise LookupError(f"unknown benchmark {name!r} in {directory}{hint} (available: {known})")


def command_for(script: Path, args: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """argv and environment that run ``script`` with the repository root importable."""
    root = str(script.resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return [sys.executable, str(script), *args], env


def _pump(stream, sink, keep: list) -> None:
    for line in iter(stream.readline, ""):
        sink.write(line)
        sink.flush()
        keep.append(line)
    stream.close()


def run_tee(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, list[str]]:
    """Run ``cmd`` streaming its stdout/stderr through; return (exit code, stdout, stderr tail)."""
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            bufsize=1)
    out: list[str] = []
    err: list[str] = []
    pumps = [threading.Thread(target=_pump, args=(proc.stdout, sys.stdout, out), daemon=True),
             threading.Thread(target=_pump, args=(proc.stderr, sys.stderr, err), daemon=True)]
    for t in pumps:
        t.start()
    code = proc.wait()
    for t in pumps:
        t.join()
    return code, "".join(out), [line.rstrip("\n") for line in err[-20:]]


def run_all(argv: Sequence[str], directory: Path) -> int:
    """``aletheia-bench all``: run ``ALL`` in sequence, then render the docs (module docstring)."""
    p = argparse.ArgumentParser(prog="aletheia-bench all", description="run " + ", ".join(ALL)
                                + " in sequence and write docs/benchmarks.md from their JSON results")
    p.add_argument("--quick", action="store_true", help="smoke settings of every benchmark (minutes, not representative)")
    p.add_argument("--only", default=",".join(ALL), help="comma-separated subset of " + ",".join(ALL))
    p.add_argument("--json-dir", default="docs/bench", help="where NAME.json and all.json go")
    p.add_argument("--doc", default="docs/benchmarks.md")
    args = p.parse_args(list(argv))
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in ALL]
    if unknown:
        p.error(f"--only: unknown {unknown} (choose from {', '.join(ALL)})")
    root = directory.resolve().parent
    json_dir = Path(args.json_dir)
    json_dir_abs = json_dir if json_dir.is_absolute() else root / json_dir
    json_dir_abs.mkdir(parents=True, exist_ok=True)
    scripts = {name: resolve(name, directory) for name in names}  # fail before running anything
    runs = []
    for i, name in enumerate(names, 1):
        out = json_dir / f"{name}.json"
        (root / out).unlink(missing_ok=True)  # never render a stale result of an earlier run
        extra = QUICK_ARGS.get(name, ["--quick"]) if args.quick else []
        bench_args = ["--json", str(out), *extra]
        cmd, env = command_for(scripts[name], bench_args)
        env.setdefault("COLUMNS", "170")
        print(f"[aletheia-bench all {i}/{len(names)}] {name} {' '.join(bench_args)}", file=sys.stderr, flush=True)
        start = time.monotonic()
        code, stdout, err_tail = run_tee(cmd, env, root)
        seconds = time.monotonic() - start
        print(f"[aletheia-bench all {i}/{len(names)}] {name}: exit {code} after {seconds / 60:.1f} min",
              file=sys.stderr, flush=True)
        runs.append({"name": name, "json": str(root / out), "returncode": code, "seconds": seconds,
                     "command": f"flock /tmp/aletheia-heavy.lock aletheia-bench {name} {' '.join(bench_args)}",
                     "summary": summary(scripts[name]), "stdout": stdout,
                     "stderr_tail": err_tail if code else []})
    manifest = json_dir_abs / "all.json"
    manifest.write_text(json.dumps({"command": "aletheia-bench all" + (" --quick" if args.quick else ""),
                                    "quick": args.quick, "runs": runs}, indent=2) + "\n")
    report_cmd, env = command_for(directory / REPORT_SCRIPT, ["--manifest", str(manifest), "-o", args.doc])
    rendered = subprocess.run(report_cmd, env=env, cwd=root).returncode
    failed = [r["name"] for r in runs if r["returncode"] != 0]
    if failed or rendered:
        print(f"aletheia-bench all: failed: {', '.join(failed) or 'report rendering'}", file=sys.stderr)
        return 1
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip() + "\n\n" + USAGE)
        return 0 if argv else 2
    try:
        directory = benchmarks_dir()
        if argv[0] == "list":
            print(format_listing(directory))
            print(f"  (and `all`: {', '.join(ALL)} in sequence -> docs/benchmarks.md)")
            return 0
        if argv[0] == "all":
            return run_all(argv[1:], directory)
        script = resolve(argv[0], directory)
    except (FileNotFoundError, LookupError) as exc:
        print(f"aletheia-bench: error: {exc}", file=sys.stderr)
        return 2
    cmd, env = command_for(script, argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(cmd[0], cmd, env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
