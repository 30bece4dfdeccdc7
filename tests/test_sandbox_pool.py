"""Ray sandbox pool (actors/sandbox.py): real Ray, real bubblewrap executors in the actors."""
from __future__ import annotations

import glob
import tempfile
import threading
import time

import pytest
import ray

from aletheia_ray.actors.sandbox import SandboxPool
from aletheia_ray.sandbox.isolation import SANDBOX_UID_BASE, pids_of_uid
from aletheia_ray.sandbox.types import Status, StdioTest, Submission

POOL_SLOT_OFFSET = 50  # executor tests use low slots; the loopback remote test uses 41
POOL_SLOT_OFFSET_AUTO = 100  # 4 actors: slots 100-103


def _square_submission(i: int, wrong: bool = False, sleep_s: float = 0.4) -> Submission:
    """Prints n*n after a short sleep; ``wrong`` ones print n*n+1 (WA): results are checkable."""
    code = f"import time\ntime.sleep({sleep_s})\nn = int(input())\nprint(n * n{' + 1' if wrong else ''})\n"
    return Submission(f"sq-{i}", "python", code, tests=[StdioTest(str(i), str(i * i))])


def _describe(pids: list[int]) -> str:
    """State, parent and command line of leftover processes (for the failure message)."""
    out = []
    for pid in pids:
        try:
            status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status") if ":" in line)
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ")[:200]
            ppid = status["PPid"].strip()
            parent = open(f"/proc/{ppid}/cmdline", "rb").read().replace(b"\0", b" ")[:120]
            out.append(f"{pid} {status['State'].strip()} ppid={ppid} ({parent!r}) {cmd!r}")
        except OSError as exc:
            out.append(f"{pid}: {exc}")
    return "leftover sandbox processes: " + "; ".join(out)


@pytest.fixture(scope="module")
def ray_session():
    temp_dir = tempfile.mkdtemp(prefix="ray-sbxpool-", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.sandbox
@pytest.mark.slow
def test_sandbox_pool_batch_survives_killed_actor_with_each_result_exactly_once(ray_session):
    pool = SandboxPool(num_actors=2, num_cpus_per_actor=0.5, submission_timeout_s=120,
                       max_retries=2, slot_offset=POOL_SLOT_OFFSET)
    try:
        levels = pool.probe()
        assert sorted(p["slot"] for p in levels) == [POOL_SLOT_OFFSET, POOL_SLOT_OFFSET + 1]
        assert all(p["level"] == levels[0]["level"] != "none" for p in levels)
        subs = [_square_submission(i, wrong=(i % 5 == 0)) for i in range(16)]
        victim = pool.actor_handles[0]
        out: dict = {}
        scorer = threading.Thread(target=lambda: out.setdefault("results", pool.score(subs)))
        scorer.start()
        time.sleep(2.0)  # a few submissions done, others queued/running on both actors
        ray.kill(victim, no_restart=True)
        scorer.join(timeout=300)
        assert not scorer.is_alive(), "score() did not finish after an actor was killed"
        results = out["results"]
        assert [r.id for r in results] == [s.id for s in subs]  # input order, none dropped
        assert len({id(r) for r in results}) == len(subs)
        for i, r in enumerate(results):
            want = (Status.WA, 0.0) if i % 5 == 0 else (Status.OK, 1.0)
            assert (r.status, r.pass_rate) == want, (r.id, r.status, r.detail)
        assert pool.stats["sandbox/actor_restarts"] >= 1
        assert pool.actor_handles[0] != victim
        # the restarted actor works and kept its slot
        assert sorted(p["slot"] for p in pool.probe()) == [POOL_SLOT_OFFSET, POOL_SLOT_OFFSET + 1]
    finally:
        pool.shutdown()
    # nothing left behind: work dirs (also the killed actor's) and sandboxed processes
    slots = (POOL_SLOT_OFFSET, POOL_SLOT_OFFSET + 1)
    assert not [p for s in slots for p in glob.glob(f"/tmp/aletheia-sandbox-slot{s}")]
    # a killed actor's in-flight sandboxed processes die with their parent (bwrap --die-with-parent);
    # on a loaded machine that takes a moment: allow a bounded grace period, then require none.
    deadline = time.monotonic() + 15.0
    while [pid for s in slots for pid in pids_of_uid(SANDBOX_UID_BASE + s)] and time.monotonic() < deadline:
        time.sleep(0.5)
    left = [pid for s in slots for pid in pids_of_uid(SANDBOX_UID_BASE + s)]
    assert not left, _describe(left)


@pytest.mark.sandbox
@pytest.mark.slow
def test_sandbox_pool_times_out_stuck_submission_as_infra_error_and_finishes_others(ray_session):
    pool = SandboxPool(num_actors=2, num_cpus_per_actor=0.5, submission_timeout_s=5,
                       max_retries=1, slot_offset=POOL_SLOT_OFFSET)
    try:
        pool.probe()  # actors up before the clock matters
        stuck = Submission("stuck", "python", "import time\ntime.sleep(60)\n",
                           tests=[StdioTest("", "")], time_limit_s=60)
        subs = [_square_submission(0, sleep_s=0.1), stuck, _square_submission(2, sleep_s=0.1),
                _square_submission(3, wrong=True, sleep_s=0.1)]
        results = pool.score(subs)
        assert [r.id for r in results] == ["sq-0", "stuck", "sq-2", "sq-3"]
        assert [r.status for r in results] == [Status.OK, Status.INFRA, Status.OK, Status.WA]
        assert results[1].pass_rate is None  # unknown, never a reward of 0
        assert "pool timeout" in results[1].tests[0].detail
        assert "2 attempts" in results[1].tests[0].detail
        assert pool.stats["sandbox/timeouts"] == 2 and pool.stats["sandbox/retries"] == 1
    finally:
        pool.shutdown()


def test_sandbox_pool_rejects_bad_configuration():
    with pytest.raises(ValueError, match="num_actors"):
        SandboxPool(num_actors=0)
    with pytest.raises(ValueError, match="backend"):
        SandboxPool(num_actors=1, backend="docker")
    with pytest.raises(ValueError, match="url"):
        SandboxPool(num_actors=1, backend="sandboxfusion")


@pytest.mark.sandbox
def test_sandbox_pool_auto_sizes_one_actor_per_cpu_slot_of_the_cluster(ray_session):
    pool = SandboxPool(num_actors="auto", num_cpus_per_actor=0.5, slot_offset=POOL_SLOT_OFFSET_AUTO)
    try:
        assert len(pool._actors) == 4  # 2 CPUs / 0.5
        assert [a.slot for a in pool._actors] == list(range(POOL_SLOT_OFFSET_AUTO,
                                                            POOL_SLOT_OFFSET_AUTO + 4))
        subs = [Submission(id=f"s{i}", language="python", code="print(input())",
                           tests=[StdioTest(str(i), str(i))]) for i in range(6)]
        assert [r.pass_rate for r in pool.score(subs)] == [1.0] * 6
    finally:
        pool.shutdown()
    reserved = SandboxPool(num_actors="auto", num_cpus_per_actor=0.5, reserve_cpus=1.0,
                           slot_offset=POOL_SLOT_OFFSET_AUTO)
    try:
        assert len(reserved._actors) == 2
    finally:
        reserved.shutdown()
    with pytest.raises(ValueError, match="num_actors"):
        SandboxPool(num_actors="many")
