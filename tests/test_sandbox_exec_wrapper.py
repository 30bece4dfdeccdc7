"""The compiled exec wrapper (fast launch path): same layers as the preexec path, setup errors infra."""
from __future__ import annotations

import os
import threading
import time

import pytest

from aletheia_ray.sandbox.executor import Executor
from aletheia_ray.sandbox.isolation import Limits
from aletheia_ray.sandbox.types import Status, StdioTest, Submission

pytestmark = pytest.mark.sandbox
SLOT = 94
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="cgroups and slot uids need root")


@pytest.fixture(scope="module")
def ex():
    with Executor(isolation="bwrap", slot=SLOT) as executor:
        yield executor


def test_wrapper_is_used_and_probe_reports_every_layer(ex):
    assert ex.exec_wrapper and os.access(ex.exec_wrapper, os.X_OK)
    report = ex.probe()
    assert report.level == "full", report.layers
    assert "NPROC=128" in report.layers["rlimits"] and "CORE=0" in report.layers["rlimits"]


@ROOT_ONLY
def test_wrapped_run_is_inside_the_slot_cgroup_as_the_slot_uid(ex):
    prog = ex.new_dir()
    members: list[list[int]] = []
    uids: set[int] = set()

    def watch() -> None:
        time.sleep(0.4)
        members.append(ex.cgroup.pids())
        for pid in members[0]:
            try:
                with open(f"/proc/{pid}/status") as fh:
                    uids.update(int(line.split()[1]) for line in fh if line.startswith("Uid:"))
            except OSError:
                pass

    thread = threading.Thread(target=watch)
    thread.start()
    raw, _ = ex.launch(["/usr/bin/sleep", "1.5"], prog, False, Limits(cpu_s=5, memory_mb=256),
                       b"", 10.0, 1 << 16)
    thread.join()
    assert raw.returncode == 0 and not raw.launch_error
    assert members and len(members[0]) >= 2  # bwrap and sleep joined before exec
    assert uids == {ex.uid}


@ROOT_ONLY
def test_wrapper_setup_failure_is_infra_with_its_reason(ex, monkeypatch):
    prog = ex.new_dir()
    monkeypatch.setattr(ex.cgroup, "procs_paths", lambda: ["/nonexistent/cgroup.procs"])
    raw, oom = ex.launch(["/usr/bin/true"], prog, False, Limits(cpu_s=5, memory_mb=256), b"",
                         10.0, 1 << 16)
    status, detail = ex.classify(raw, oom)
    assert status == Status.INFRA
    assert "join cgroup /nonexistent/cgroup.procs" in detail


def test_program_writing_the_wrapper_prefix_is_not_infra(ex):
    code = "import sys\nsys.stderr.write('aletheia-exec: join cgroup x')\nsys.exit(127)\n"
    res = ex.run(Submission("forge", "python", code, tests=[StdioTest("", "")]))
    assert res.tests[0].status == Status.RE and res.pass_rate == 0.0


def test_preexec_fallback_without_a_c_compiler_still_isolates():
    fallback = Executor(isolation="bwrap", slot=SLOT + 1)
    try:
        fallback.exec_wrapper = None
        fallback._report = None
        assert fallback.probe().level == "full"
        sub = Submission("fb", "python", "print(int(input()) * 2)",
                         tests=[StdioTest("21", "42"), StdioTest("2", "5")])
        res = fallback.run(sub)
        assert [t.status for t in res.tests] == [Status.OK, Status.WA]
    finally:
        fallback.close()
