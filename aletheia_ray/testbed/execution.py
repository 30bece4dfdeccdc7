"""Execute candidates without a known pass rate, with a resumable on-disk cache.

The cache is an append-only JSONL file, one line per finished execution keyed by
sha256(problem id, test fingerprint, language, code); it is flushed after every result, so a
crashed build re-runs only what had not finished. Sandbox infrastructure failures
(``pass_rate=None``) are never cached and never become 0: the candidate is reported and skipped.
Backends: a local thread pool of ``Executor`` slots 0..N-1 (default) or Ray sandbox actors; both
yield results in completion order and each result is cached the moment it arrives.
"""
from __future__ import annotations

import hashlib
import json
import os
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from tqdm import tqdm

from aletheia_ray.sandbox.types import Submission, SubmissionResult
from aletheia_ray.testbed.candidates import Candidate
from aletheia_ray.testbed.config import ExecutionConfig
from aletheia_ray.data.problems import Problem
from aletheia_ray.data.report import BuildReport

# A runner takes submissions and yields (index, result) as each finishes, in any order.
Runner = Callable[[list[Submission]], Iterator[tuple[int, SubmissionResult]]]


def execution_key(problem: Problem, language: str, code: str) -> str:
    text = "\x00".join((problem.problem_id, problem.fingerprint, language, code))
    return hashlib.sha256(text.encode()).hexdigest()


class ExecutionCache:
    """Append-only JSONL of ``{key, problem_id, status, pass_rate}``; later lines win."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rows: dict[str, dict] = {}
        if self.path.exists():
            with open(self.path, encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    try:
                        row = json.loads(line)
                        self.rows[row["key"]] = row
                    except (json.JSONDecodeError, KeyError, TypeError):
                        if line.endswith("\n"):  # a torn last line after a crash is expected
                            raise ValueError(f"{self.path}: line {number}: malformed cache line") from None

    def get(self, key: str) -> Optional[dict]:
        return self.rows.get(key)

    def append(self, row: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.rows[row["key"]] = row


def thread_runner(cfg: ExecutionConfig) -> Runner:
    """Run on ``cfg.workers`` local Executors (slots 0..workers-1) via ``sandbox.parallel.run_local``,
    yielding in completion order (a slow candidate does not hold back the cache lines behind it)."""
    from aletheia_ray.sandbox.parallel import run_local

    def run(subs: list[Submission]) -> Iterator[tuple[int, SubmissionResult]]:
        with closing(run_local(subs, workers=cfg.workers, isolation=cfg.isolation,
                               allow_unisolated=cfg.allow_unisolated, ordered=False)) as results:
            yield from results

    return run


def pool_runner(cfg: ExecutionConfig, make_pool: Callable[[int], Any]) -> Runner:
    """Run on ``cfg.workers`` one-actor sandbox pools (``make_pool(slot)``, slots 0..workers-1, each
    keeping the pool's timeout, retry and restart handling; the Ray layer's
    ``aletheia_ray.actors.sandbox.testbed_runner`` makes Ray ``SandboxPool``s), each fed one submission
    at a time by a ``run_local`` worker thread, so results are yielded (and cached) as each one
    arrives; the pools live for one call."""
    from aletheia_ray.sandbox.parallel import run_local

    def run(subs: list[Submission]) -> Iterator[tuple[int, SubmissionResult]]:
        pools: list = []

        def make_pool_runner(slot: int) -> Callable[[Submission], SubmissionResult]:
            pool = make_pool(slot)
            pools.append(pool)
            return lambda sub: pool.score([sub])[0]

        try:
            with closing(run_local(subs, workers=cfg.workers, make_runner=make_pool_runner,
                                   ordered=False)) as results:
                yield from results
        finally:
            for pool in pools:
                pool.shutdown()

    return run


def make_runner(cfg: ExecutionConfig) -> Runner:
    """The local runner; ``execution.backend: ray`` runs on the Ray layer, whose runner the caller
    passes (``aletheia-testbed`` does: ``aletheia_ray.actors.sandbox.testbed_runner``)."""
    if cfg.backend != "threads":
        raise ValueError(f"execution.backend {cfg.backend!r} needs a runner from the Ray layer "
                         "(build_testbed(..., runner_factory=lambda: aletheia_ray.actors.sandbox.testbed_runner(cfg)))")
    return thread_runner(cfg)


@contextmanager
def run_with_progress(runner: Runner, subs: list[Submission], desc: str
                      ) -> Iterator[Iterator[tuple[int, SubmissionResult]]]:
    """``with run_with_progress(...) as results:`` iterate ``(index, result)`` under a progress
    bar; leaving the block early (an error, a crash) stops the runner's workers right there."""
    with tqdm(total=len(subs), desc=desc, unit="prog", disable=not subs) as bar, \
            closing(runner(subs)) as results:
        def counted() -> Iterator[tuple[int, SubmissionResult]]:
            for item in results:
                bar.update(1)
                yield item
        yield counted()


def score_missing(cands: list[Candidate], problems: dict[str, Problem], cache: ExecutionCache,
                  runner_factory: Callable[[], Runner], report: BuildReport) -> list[Candidate]:
    """Fill ``pass_rate`` of candidates that lack one (cache first, then the sandbox).

    Returns the candidates that have a pass rate afterwards; infra failures are reported by id.
    """
    todo: list[tuple[Candidate, str]] = []
    hits = 0
    for c in cands:
        if c.pass_rate is not None:
            continue
        key = execution_key(problems[c.problem_id], c.language, c.code)
        hit = cache.get(key)
        if hit is not None:
            c.pass_rate, hits = hit["pass_rate"], hits + 1
        else:
            todo.append((c, key))
    report.info["execution"] = {"executed": len(todo), "from_cache": hits}
    if todo:
        subs = [problems[c.problem_id].submission(key[:16], c.language, c.code) for c, key in todo]
        with run_with_progress(runner_factory(), subs, "execute candidates") as results:
            for i, res in results:
                cand, key = todo[i]
                if res.pass_rate is None:
                    report.add("sandbox_infra_error", cand.where, f"problem {cand.problem_id}: "
                               f"{res.status.value} {(res.tests[0].detail if res.tests else '')[:200]}")
                    continue
                cand.pass_rate = res.pass_rate
                cache.append({"key": key, "problem_id": cand.problem_id, "status": res.status.value,
                              "pass_rate": res.pass_rate})
    return [c for c in cands if c.pass_rate is not None]
