"""Resumable execution: results are cached in completion order, so one slow candidate does not
hold back (and, on a crash, lose) the results that finished behind it.

The unit tests use fake runners (no sandbox); the last test runs the real local sandbox.
"""
import json
import threading
import time
import types
from contextlib import closing

import pytest

from aletheia_ray.sandbox.parallel import run_local
from aletheia_ray.sandbox.types import Status, Submission, SubmissionResult
from aletheia_ray.testbed import execution
from aletheia_ray.testbed.candidates import Candidate
from aletheia_ray.testbed.config import ExecutionConfig, ProblemsConfig
from aletheia_ray.testbed.execution import ExecutionCache, execution_key, score_missing, thread_runner
from aletheia_ray.data.problems import problem_from_row
from aletheia_ray.data.report import BuildReport
from runner_helpers import Crash, crash_after

SLOW = "import time\ntime.sleep(60)\n"


def _problem(time_limit_s=1.0):
    row = {"problem_id": "Echo/1", "query": "echo a line",
           "tests": [{"input": "7\n", "output": "7\n"}], "time_limit_s": time_limit_s}
    return problem_from_row(row, ProblemsConfig(min_tests=1))


def _cands(n_fast):
    codes = [SLOW] + [f"print(input())  # {i}\n" for i in range(n_fast)]
    return [Candidate(problem_id="Echo/1", generator="g", language="python", code=c, pass_rate=None,
                      where=f"c.jsonl: line {k + 1}") for k, c in enumerate(codes)]


def _fake_result(sub: Submission) -> SubmissionResult:
    if "sleep" in sub.code:
        time.sleep(1.0)
        return SubmissionResult(id=sub.id, status=Status.TLE, pass_rate=0.0)
    return SubmissionResult(id=sub.id, status=Status.OK, pass_rate=1.0)


def test_run_local_unordered_yields_in_completion_order_and_ordered_is_unchanged():
    subs = [types.SimpleNamespace(id=str(i), code=SLOW if i == 0 else "x") for i in range(6)]
    out = list(run_local(subs, workers=2, make_runner=lambda slot: _fake_result, ordered=False))
    assert sorted(i for i, _ in out) == list(range(6))
    assert out[-1][0] == 0 and all(r.id == str(i) for i, r in out)  # the slow one comes last
    ordered = list(run_local(subs, workers=2, make_runner=lambda slot: _fake_result))
    assert [r.id for r in ordered] == [str(i) for i in range(6)]  # default: input order


def _score(cands, problem, cache, runner):
    return score_missing(cands, {problem.problem_id: problem}, cache, lambda: runner, BuildReport())


def _fake_runner():
    def run(subs):
        with closing(run_local(subs, workers=2, make_runner=lambda slot: _fake_result, ordered=False)) as r:
            yield from r
    return run


def test_crash_keeps_results_finished_behind_a_slow_candidate(tmp_path):
    problem, cache_path = _problem(), tmp_path / "cache.jsonl"
    with pytest.raises(Crash):
        _score(_cands(20), problem, ExecutionCache(cache_path), crash_after(_fake_runner(), 5))
    cached = {json.loads(l)["key"] for l in cache_path.read_text().splitlines()}
    fast_keys = {execution_key(problem, "python", c.code) for c in _cands(20)[1:]}
    assert len(cached) == 5 and cached <= fast_keys  # five fast ones, not the still-running slow one

    seen: list[str] = []
    report = BuildReport()
    done = score_missing(_cands(20), {"Echo/1": problem}, ExecutionCache(cache_path),
                         lambda: crash_after(_fake_runner(), 10 ** 6, seen), report)
    assert report.info["execution"] == {"executed": 16, "from_cache": 5}
    assert len(seen) == 16 and SLOW in seen  # the cached five are not executed again
    assert sorted(c.pass_rate for c in done) == [0.0] + [1.0] * 20


def test_ray_runner_caches_each_result_as_it_arrives(tmp_path, monkeypatch):
    """The Ray path (one-actor pools fed one submission at a time), with a fake pool class."""
    made, closed = [], []

    class FakePool:
        def __init__(self, num_actors, isolation, allow_unisolated, slot_offset):
            assert num_actors == 1
            made.append(slot_offset)

        def score(self, subs):
            return [_fake_result(s) for s in subs]

        def shutdown(self):
            closed.append(threading.get_ident())

    runner = execution.pool_runner(ExecutionConfig(backend="ray", workers=2),
                                   lambda slot: FakePool(1, isolation="auto", allow_unisolated=False, slot_offset=slot))
    problem, cache_path = _problem(), tmp_path / "cache.jsonl"
    with pytest.raises(Crash):
        _score(_cands(12), problem, ExecutionCache(cache_path), crash_after(runner, 4))
    rows = [json.loads(l) for l in cache_path.read_text().splitlines()]
    assert len(rows) == 4 and all(r["pass_rate"] == 1.0 for r in rows)
    assert sorted(made) == [0, 1] and len(closed) == 2  # slots 0..workers-1, every pool shut down


@pytest.mark.sandbox
def test_real_sandbox_crash_keeps_fast_results_and_rerun_skips_them(tmp_path):
    problem, cache_path = _problem(time_limit_s=1.0), tmp_path / "cache.jsonl"
    exe = ExecutionConfig(workers=2)
    t0 = time.monotonic()
    with pytest.raises(Crash):
        _score(_cands(8), problem, ExecutionCache(cache_path), crash_after(thread_runner(exe), 6))
    rows = [json.loads(l) for l in cache_path.read_text().splitlines()]
    assert len(rows) == 6 and {r["status"] for r in rows} == {"OK"}  # fast ones, slow still running
    assert time.monotonic() - t0 < 30

    seen: list[str] = []
    report = BuildReport()
    done = score_missing(_cands(8), {"Echo/1": problem}, ExecutionCache(cache_path),
                         lambda: crash_after(thread_runner(exe), 10 ** 6, seen), report)
    assert report.info["execution"] == {"executed": 3, "from_cache": 6}
    assert SLOW in seen and len(seen) == 3
    assert sorted(c.pass_rate for c in done) == [0.0] + [1.0] * 8
