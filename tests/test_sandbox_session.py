"""One sandbox per submission (session.py + csrc/supervisor.c): tests stay fresh and independent."""
from __future__ import annotations

import pytest

from aletheia_ray.sandbox import session as session_mod
from aletheia_ray.sandbox.executor import Executor
from aletheia_ray.sandbox.isolation import SANDBOX_UID_BASE, pids_of_uid
from aletheia_ray.sandbox.types import Status, StdioTest, Submission

SLOT = 86


@pytest.fixture(scope="module")
def ex():
    executor = Executor(isolation="bwrap", slot=SLOT)
    assert executor.supervisor, "no C compiler: sessions unavailable"
    yield executor
    executor.close()
    assert pids_of_uid(SANDBOX_UID_BASE + SLOT) == []


def _sub(code: str, n_tests: int, **kw) -> Submission:
    return Submission("s", "python", code, tests=[StdioTest(str(i), str(i)) for i in range(n_tests)],
                      **kw)


@pytest.fixture()
def count_starts(monkeypatch):
    """How many sandboxes each submission started (wraps TestSession._start)."""
    starts: list[int] = []
    real = session_mod.TestSession._start

    def counted(self):
        starts.append(1)
        return real(self)

    monkeypatch.setattr(session_mod.TestSession, "_start", counted)
    return starts


def test_all_tests_of_a_submission_share_one_sandbox(ex, count_starts):
    code = ("import os\nn = input()\nopen('/dev/stderr', 'w').write('log')\n"
            "assert os.getppid() == 2  # forked by the supervisor\nopen('/dev/stdout', 'w').write(n)\n")
    res = ex.run(_sub(code, 10))
    assert res.pass_rate == 1.0 and len(count_starts) == 1, [t.detail for t in res.tests]


def test_files_daemons_and_ipc_of_one_test_are_gone_in_the_next(ex, count_starts):
    code = (
        "import ctypes, os, sys, time\n"
        "libc = ctypes.CDLL(None)\n"
        "n = int(input())\n"
        "if n == 0:\n"
        "    assert libc.shmget(4242, 4096, 0o1600) >= 0  # IPC_CREAT | 0600\n"
        "    open('/sandbox/left', 'w').write('x'); open('/tmp/left', 'w').write('x')\n"
        "    os.makedirs('/tmp/d/e'); os.chmod('/tmp/d', 0)\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60)\n"
        "        os._exit(0)\n"
        "    print(0)\n"
        "else:\n"
        "    left = [p for p in ('/sandbox/left', '/tmp/left', '/tmp/d') if os.path.exists(p)]\n"
        "    left += ['shm'] if libc.shmget(4242, 0, 0) >= 0 else []\n"
        "    pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
        "    others = [p for p in pids if p not in (1, 2, os.getpid())]\n"
        "    print(n if not left and not others else f'{left} {others}')\n"
    )
    res = ex.run(_sub(code, 3))
    assert [t.status for t in res.tests] == [Status.OK] * 3, [t.detail for t in res.tests]
    assert len(count_starts) == 1


def test_supervisor_is_not_readable_by_the_test(ex):
    code = (
        "import os\n"
        "n = input()\n"
        "out = []\n"
        "for path in ('/proc/2/environ', '/proc/2/mem', '/proc/2/fd'):\n"
        "    try:\n"
        "        os.listdir(path) if path.endswith('fd') else open(path, 'rb').read(1)\n"
        "        out.append('read ' + path)\n"
        "    except OSError:\n"
        "        pass\n"
        "print(n if not out else out)\n"
    )
    res = ex.run(_sub(code, 1))
    assert res.pass_rate == 1.0, res.tests[0].detail


def test_killing_the_supervisor_is_charged_to_that_test_only(ex, count_starts):
    code = "import os, signal\nn = int(input())\nif n == 1:\n    os.kill(2, signal.SIGKILL)\nprint(n)\n"
    res = ex.run(_sub(code, 4))
    assert [t.status for t in res.tests] == [Status.OK, Status.RE, Status.OK, Status.OK]
    assert "killed the sandbox supervisor" in res.tests[1].detail
    assert res.pass_rate == 0.75 and len(count_starts) == 2


def test_timeout_and_output_flood_end_the_sandbox_and_later_tests_start_fresh(ex, count_starts):
    code = ("import sys, time\nn = int(input())\n"
            "if n == 1:\n    time.sleep(30)\n"
            "if n == 2:\n    sys.stdout.write('x' * (3 << 20))\n"
            "print(n)\n")
    res = ex.run(_sub(code, 4, time_limit_s=0.5, output_limit_mb=1))
    assert [t.status for t in res.tests] == [Status.OK, Status.TLE, Status.OLE, Status.OK]
    assert len(count_starts) == 3


def test_exit_codes_and_signals_are_the_programs_own(ex):
    code = ("import os, signal\nn = int(input())\n"
            "if n == 1:\n    os._exit(130)\n"
            "if n == 2:\n    os.kill(os.getpid(), signal.SIGSEGV)\n"
            "print(n)\n")
    res = ex.run(_sub(code, 3))
    assert [t.status for t in res.tests] == [Status.OK, Status.RE, Status.RE]
    assert res.tests[1].detail.startswith("exit 130") and res.tests[2].detail.startswith("signal 11")


def test_sandbox_that_cannot_start_is_infra_error_not_a_wrong_answer(ex, monkeypatch):
    monkeypatch.setattr(session_mod, "SUPERVISOR_NAME", "no-such-supervisor")
    res = ex.run(_sub("print(input())", 2))
    assert res.status == Status.INFRA and res.pass_rate is None
    assert "sandbox failed" in res.detail
