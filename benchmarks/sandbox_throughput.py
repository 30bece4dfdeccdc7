"""Sandbox throughput: isolated executions/s (our bubblewrap ``Executor``) against bare
``subprocess`` on the same programs, in the same run.

Workload per language: ``--submissions`` programs x 10 stdin/stdout tests each, run by 2 and by 4
workers (threads; each isolated worker owns one ``Executor`` slot, which runs a submission's tests
in one sandbox with a fresh process per test, see sandbox/session.py). Both sides do the same work:
C++ is compiled once per submission (g++ -std=c++17 -O2) then run per test; outputs are compared on
the host with the same checker. The "cpp run-only" rows exclude compilation on both sides (the
compile dominates C++ and would hide the per-test sandbox cost).

    flock /tmp/aletheia-heavy.lock timeout 900 python3 benchmarks/sandbox_throughput.py
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Callable

from rich.console import Console
from rich.table import Table

from aletheia_ray.sandbox.checkers import checker
from aletheia_ray.sandbox.executor import Executor
from aletheia_ray.sandbox.isolation import resolve_binary
from aletheia_ray.sandbox.languages import language
from aletheia_ray.sandbox.types import Status, StdioTest, Submission, SubmissionResult

TESTS_PER_SUBMISSION = 10
SLOT_OFFSET = 60  # clear of the executor's and the pool's test slots
PY_CODE = "n = int(input())\nprint(sum(i * i for i in range(n)) % 1000003 + {k})\n"
CPP_CODE = ("#include <bits/stdc++.h>\nint main(){ long n; std::cin >> n; long s = 0;\n"
            "for (long i = 0; i < n; ++i) s = (s + i * i) % 1000003;\n"
            "std::cout << s + {k} << '\\n'; }\n")


def make_submissions(lang: str, count: int) -> list[Submission]:
    subs = []
    for k in range(count):
        code = (PY_CODE if lang == "python" else CPP_CODE).replace("{k}", str(k))
        tests = [StdioTest(str(n), str(sum(i * i for i in range(n)) % 1000003 + k))
                 for n in range(100, 100 + 300 * TESTS_PER_SUBMISSION, 300)]
        subs.append(Submission(f"{lang}-{k}", lang, code, tests=tests, time_limit_s=5.0))
    return subs


# ---------------------------------------------------------------------------------- bare side
def _bare_compile(sub: Submission, work: str) -> list[str]:
    lang = language(sub.language)
    src = os.path.join(work, lang.source_name)
    with open(src, "w") as fh:
        fh.write(sub.code)
    if sub.language == "python":  # the same interpreter the sandbox runs (not this venv's)
        return [resolve_binary("python3"), "-I", "-B", src]
    subprocess.run([resolve_binary("g++"), "-std=c++17", "-O2", "-pipe", "-o", os.path.join(work, "main"), src],
                   check=True, capture_output=True)
    return [os.path.join(work, "main")]


def _bare_tests(argv: list[str], sub: Submission, work: str) -> int:
    check, passed = checker(sub.checker), 0
    for test in sub.tests or []:
        proc = subprocess.run(argv, input=test.input.encode(), capture_output=True, cwd=work,
                              timeout=sub.time_limit_s)
        passed += proc.returncode == 0 and check(proc.stdout.decode(), test.output)
    return passed


def bare_submission(sub: Submission) -> int:
    """Compile (C++) once, run every test with plain subprocess; returns tests passed."""
    work = tempfile.mkdtemp(prefix="bench-bare-")
    try:
        return _bare_tests(_bare_compile(sub, work), sub, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------------------ isolated side
def _isolated_run_only(ex: Executor, sub: Submission, prog: str) -> int:
    return sum(t.status == Status.OK
               for t in ex.run_stdio_tests(sub, language(sub.language), prog))


def _isolated_compile(ex: Executor, sub: Submission) -> str:
    lang = language(sub.language)
    prog = ex.new_dir()
    with open(os.path.join(prog, lang.source_name), "w") as fh:
        fh.write(sub.code)
    result = SubmissionResult(sub.id, Status.OK, None)
    if not ex.compile(sub, lang, prog, result):
        raise RuntimeError(f"{sub.id}: isolated compile failed: {result.detail}")
    return prog


# ---------------------------------------------------------------------------------- driver
@dataclass
class Row:
    workload: str
    workers: int
    executions: int
    bare_per_s: float
    isolated_per_s: float

    @property
    def ratio(self) -> float:
        return self.isolated_per_s / self.bare_per_s


def timed_pool(subs: list[Submission], runners: list[Callable[[Submission], int]]) -> float:
    """Run subs on len(runners) threads; returns executions/s; every test must pass."""
    work: queue.Queue = queue.Queue()
    for sub in subs:
        work.put(sub)
    passed = [0] * len(runners)

    def loop(i: int) -> None:
        while True:
            try:
                sub = work.get_nowait()
            except queue.Empty:
                return
            passed[i] += runners[i](sub)

    start = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(len(runners))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    total = sum(len(s.tests or []) for s in subs)
    if sum(passed) != total:
        raise RuntimeError(f"only {sum(passed)}/{total} tests passed: the benchmark is broken")
    return total / elapsed


def measure(workload: str, subs: list[Submission], executors: list[Executor],
            workers: int) -> Row:
    run_only = workload.endswith("run-only")
    exs = executors[:workers]
    if run_only:  # compile once, outside the timing, on both sides
        tmp = tempfile.mkdtemp(prefix="bench-bare-bin-")
        bare_argv = {}
        for sub in subs:
            os.makedirs(os.path.join(tmp, sub.id))
            bare_argv[sub.id] = _bare_compile(sub, os.path.join(tmp, sub.id))
        progs = [{s.id: _isolated_compile(ex, s) for s in subs} for ex in exs]
        bare = [lambda s: _bare_tests(bare_argv[s.id], s, tmp) for _ in range(workers)]
        isolated = [lambda s, ex=ex, p=p: _isolated_run_only(ex, s, p[s.id])
                    for ex, p in zip(exs, progs)]
    else:
        bare = [bare_submission] * workers
        isolated = [lambda s, ex=ex: round((ex.run(s).pass_rate or 0) * len(s.tests or []))
                    for ex in exs]
    bare_rate = timed_pool(subs, bare)
    isolated_rate = timed_pool(subs, isolated)
    if run_only:
        shutil.rmtree(tmp, ignore_errors=True)
    return Row(workload, workers, sum(len(s.tests or []) for s in subs), bare_rate, isolated_rate)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submissions", type=int, default=8, help="programs per language")
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    err = Console(stderr=True)
    executors = [Executor(isolation="bwrap", slot=SLOT_OFFSET + i) for i in range(max(args.workers))]
    level = executors[0].probe().level
    rows = []
    try:
        for workload in ("python", "cpp (compile+run)", "cpp run-only"):
            lang = "python" if workload == "python" else "cpp"
            subs = make_submissions(lang, args.submissions)
            for workers in args.workers:
                err.log(f"measuring {workload} with {workers} workers ...")
                rows.append(measure(workload, subs, executors, workers))
    finally:
        for ex in executors:
            ex.close()
    table = Table(title=f"sandbox throughput (isolation: {level}, {os.cpu_count()} cores, "
                        f"{TESTS_PER_SUBMISSION} tests/submission)")
    for col in ("workload", "workers", "executions", "bare exec/s", "isolated exec/s",
                "isolated/bare"):
        table.add_column(col, justify="left" if col == "workload" else "right")
    for r in rows:
        table.add_row(r.workload, str(r.workers), str(r.executions), f"{r.bare_per_s:.1f}",
                      f"{r.isolated_per_s:.1f}", f"{r.ratio:.0%}")
    Console(width=120).print(table)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([{**r.__dict__, "ratio": r.ratio} for r in rows], fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
