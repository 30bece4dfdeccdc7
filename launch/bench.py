"""``aletheia-bench``: run a benchmark script of ``benchmarks/`` by name.

    aletheia-bench list                       # available benchmarks with their one-line summary
    aletheia-bench sandbox_throughput [ARGS]  # runs benchmarks/sandbox_throughput.py ARGS

The script replaces this process (``os.execv``), so its exit code, output and Ctrl-C behave as
if it had been started with ``python benchmarks/NAME.py``; the repository root is put on
``PYTHONPATH`` so scripts can import ``aletheia_ray``, ``actors`` and ``benchmarks.*``.
``ALETHEIA_BENCHMARKS_DIR`` points at another directory of scripts (e.g. a non-editable install).
A script is any ``*.py`` in that directory not starting with ``_``; its summary is the first
paragraph of its module docstring (read with ``ast``, without importing it).
"""
from __future__ import annotations

import ast
import difflib
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

USAGE = "usage: aletheia-bench NAME [ARGS...] | aletheia-bench list | aletheia-bench --help"


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


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip() + "\n\n" + USAGE)
        return 0 if argv else 2
    try:
        directory = benchmarks_dir()
        if argv[0] == "list":
            print(format_listing(directory))
            return 0
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
