"""A sandbox slot has one holder on a host, and ``run_local`` stopped early frees its slots at once.

CI once failed because a ``run_local`` abandoned by a crash kept its workers running and closed
its executors later (at garbage collection), in the middle of the next run on the same slots:
the closing sweep killed the new run's bwrap probe (exit -9). Real executors, real sandboxes.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from aletheia_ray.sandbox import slot_lock
from aletheia_ray.sandbox.executor import Executor
from aletheia_ray.sandbox.parallel import run_local
from aletheia_ray.sandbox.types import Status, StdioTest, Submission, SubmissionResult

SLOT = 96  # clear of the other sandbox tests' slots
pytestmark = pytest.mark.sandbox
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="slots (uid + cgroup) exist only as root")


def _sleeper(i: int, seconds: float = 0.3) -> Submission:
    return Submission(id=f"s{i}", language="python", code=f"import time\ntime.sleep({seconds})\nprint({i})",
                      tests=[StdioTest("", str(i))])


def _run_local_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("run_local-")]


@as_root
def test_a_slot_has_one_holder_and_the_error_names_slot_and_holder(monkeypatch):
    monkeypatch.setattr(slot_lock, "SLOT_CLAIM_WAIT_S", 0.5)
    with Executor(slot=SLOT):
        with pytest.raises(RuntimeError, match=rf"sandbox slot {SLOT} is held by another executor "
                                               rf"\(pid {os.getpid()}: .*slot_offset="):
            Executor(slot=SLOT)
    with Executor(slot=SLOT) as again:  # released by close(): claimable at once
        assert again.run(_sleeper(1, 0)).status == Status.OK


@as_root
def test_a_killed_holder_leaves_no_stale_claim(monkeypatch):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom aletheia_ray.sandbox.slot_lock import claim_slot\n"
         f"claim_slot({SLOT + 1}); print('held', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RuntimeError, match=rf"slot {SLOT + 1} is held .*pid {holder.pid}"):
            slot_lock.claim_slot(SLOT + 1, wait_s=0.2)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    slot_lock.release_slot(slot_lock.claim_slot(SLOT + 1, wait_s=0))


def test_stopping_run_local_early_cancels_queued_jobs_and_joins_its_workers():
    calls = []

    def make_runner(slot):
        def run(sub):
            calls.append(sub.id)
            time.sleep(0.05)
            return SubmissionResult(id=sub.id, status=Status.OK, pass_rate=1.0)
        return run

    results = run_local([_sleeper(i) for i in range(100)], workers=2, make_runner=make_runner)
    assert next(results).id == "s0"
    results.close()
    assert _run_local_threads() == []
    ran = len(calls)
    assert ran <= 4, calls  # the first result, plus at most one in flight per worker
    time.sleep(0.3)
    assert len(calls) == ran  # nothing runs after close()


def test_a_worker_error_stops_the_other_workers():
    calls = []

    def make_runner(slot):
        def run(sub):
            calls.append(sub.id)
            if sub.id == "s3":
                raise OSError("sandbox host broke")
            time.sleep(0.05)
            return SubmissionResult(id=sub.id, status=Status.OK, pass_rate=1.0)
        return run

    with pytest.raises(OSError, match="sandbox host broke"):
        list(run_local([_sleeper(i) for i in range(100)], workers=2, make_runner=make_runner))
    assert _run_local_threads() == []
    ran = len(calls)
    time.sleep(0.3)
    assert len(calls) == ran < 10


@as_root
def test_real_executors_of_a_stopped_run_local_free_their_slots(monkeypatch):
    results = run_local([_sleeper(i) for i in range(12)], workers=2, slot_base=SLOT + 2)
    first = next(results)
    assert (first.id, first.status) == ("s0", Status.OK)
    results.close()
    assert _run_local_threads() == []
    monkeypatch.setattr(slot_lock, "SLOT_CLAIM_WAIT_S", 0.0)  # free now, not after a wait
    for slot in (SLOT + 2, SLOT + 3):
        with Executor(slot=slot) as ex:
            assert ex.run(_sleeper(7, 0)).status == Status.OK
