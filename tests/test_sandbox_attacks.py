"""Attack suite: hostile programs are contained and reported with the right status.

Pattern for leaks: the *expected output* is the secret (checked on the host), and the program
prints whatever it managed to read; a status other than OK proves nothing leaked. After the suite
the host is clean: no process of the sandbox uid, no temp dir, no new mount.
"""
from __future__ import annotations

import glob
import os
import secrets
import socket
import threading
import time

import pytest

from aletheia_ray.sandbox.executor import Executor
from aletheia_ray.sandbox.isolation import SANDBOX_UID_BASE, _proc_status, pids_of_uid
from aletheia_ray.sandbox.types import Status, StdioTest, Submission

pytestmark = pytest.mark.sandbox
SLOT = 75
HARNESS_SECRET = "ALETHEIA_HARNESS_SECRET_" + secrets.token_hex(8)


def _running_in_slot() -> list[int]:
    """Live (non-zombie) processes of the slot's uid; zombies are reaped at the next run/close."""
    out = []
    for pid in pids_of_uid(SANDBOX_UID_BASE + SLOT):
        try:
            if _proc_status(pid)[2] != "Z":
                out.append(pid)
        except OSError:
            pass
    return out


def _mounts() -> list[str]:
    with open("/proc/self/mounts") as fh:
        return sorted(fh.read().splitlines())


@pytest.fixture(scope="module")
def ex():
    os.environ["ALETHEIA_TEST_MARKER"] = HARNESS_SECRET  # must never be visible inside
    mounts_before = _mounts()
    executor = Executor(slot=SLOT)
    assert executor.probe().level == "full", executor.probe().layers
    yield executor
    executor.close()
    del os.environ["ALETHEIA_TEST_MARKER"]
    # The host is clean after the whole suite.
    assert pids_of_uid(SANDBOX_UID_BASE + SLOT) == []
    assert glob.glob(f"/tmp/aletheia-sbx-{os.getpid()}-s{SLOT}-*") == []
    assert _mounts() == mounts_before


@pytest.fixture()
def secret_file(tmp_path):
    token = "host-secret-" + secrets.token_hex(8)
    path = tmp_path / "secret.txt"
    path.write_text(token)
    os.chmod(tmp_path, 0o755)
    os.chmod(path, 0o644)  # readable by anyone on the host: only the sandbox stops it
    return str(path), token


def run_py(ex, code, expected="", stdin="", time_limit_s=2.0, memory_limit_mb=256, **kw):
    sub = Submission(id="attack", language="python", code=code,
                     tests=[StdioTest(stdin, expected)], checker="exact",
                     time_limit_s=time_limit_s, memory_limit_mb=memory_limit_mb, **kw)
    res = ex.run(sub)
    assert res.pass_rate is not None, res.detail
    return res.tests[0]


def test_loopback_listener_and_dns_unreachable(ex):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(5)
    port = listener.getsockname()[1]
    accepted = []
    thread = threading.Thread(target=lambda: accepted.append(_accept(listener)), daemon=True)
    thread.start()
    code = f"""
import socket
s = socket.create_connection(("127.0.0.1", {port}), timeout=2)
print("connected")
"""
    result = run_py(ex, code, expected="connected\n")
    assert result.status == Status.RE and "PermissionError" in result.detail
    dns = run_py(ex, "import socket\nprint(socket.gethostbyname('example.com'))",
                 expected="93.184.215.14\n")
    assert dns.status == Status.RE
    thread.join(6)
    listener.close()
    assert accepted == [None]


def _accept(listener):
    try:
        return listener.accept()
    except OSError:
        return None


def test_host_secret_root_and_pid1_environ_invisible(ex, secret_file):
    path, token = secret_file
    assert run_py(ex, f"print(open({path!r}).read(), end='')", expected=token).status == Status.RE
    root = run_py(ex, "import os\nprint(os.listdir('/root'))", expected="[]\n")
    assert root.status == Status.RE and "FileNotFoundError" in root.detail
    environ = run_py(ex, "import os, sys\n"
                         "env = open('/proc/1/environ').read() + str(dict(os.environ))\n"
                         f"print({HARNESS_SECRET!r} if {HARNESS_SECRET!r} in env else env)",
                     expected=HARNESS_SECRET + "\n")
    assert environ.status == Status.WA  # ran fine, saw neither marker nor harness env


def test_expected_outputs_never_enter_the_sandbox(ex):
    expected = "expected-" + secrets.token_hex(12)
    finder = f"""
import os
needle = {expected[:9]!r} + {expected[9:]!r}
for top in ("/", ):
    for dirpath, dirs, files in os.walk(top):
        if dirpath.startswith(("/proc", "/sys", "/dev", "/usr")):
            dirs[:] = []
            continue
        for name in files:
            try:
                with open(os.path.join(dirpath, name), errors="ignore") as fh:
                    if needle in fh.read(1 << 20):
                        print(needle); raise SystemExit(0)
            except OSError:
                pass
import sys
data = sys.stdin.read()
print(needle if needle in data else "not found")
"""
    assert run_py(ex, finder, expected=expected + "\n", stdin="input").status == Status.WA


def test_writes_to_usr_and_outside_workdir_fail(ex, tmp_path):
    outside = tmp_path / "pwned"
    os.chmod(tmp_path, 0o777)
    code = f"""
import os
for target in ("/usr/pwned", {str(outside)!r}, "/prog/pwned"):
    try:
        open(target, "w").write("x")
        print("wrote", target)
    except OSError as exc:
        print("denied", target, type(exc).__name__)
"""
    expected = f"wrote /usr/pwned\nwrote {outside}\nwrote /prog/pwned\n"
    assert run_py(ex, code, expected=expected).status == Status.WA
    assert not os.path.exists("/usr/pwned") and not outside.exists()


def test_root_and_dev_are_read_only_and_scratch_dirs_do_not_persist_between_tests(ex):
    code = """
import os
for d in ("/", "/dev", "/dev/shm", "/tmp", "/sandbox"):
    mark = os.path.join(d, "aletheia-mark")
    if os.path.exists(mark):
        print("left over from the previous test:", mark)
    try:
        open(mark, "w").write("x")
        print("wrote", d)
    except OSError as exc:
        print("denied", d, type(exc).__name__)
"""
    expected = ("denied / OSError\ndenied /dev OSError\nwrote /dev/shm\nwrote /tmp\n"
                "wrote /sandbox\n")
    sub = Submission(id="persist", language="python", code=code, checker="exact",
                     tests=[StdioTest("", expected), StdioTest("", expected)])
    res = ex.run(sub)
    assert [t.status for t in res.tests] == [Status.OK, Status.OK], res
    fill = "open('/dev/shm/big', 'wb').write(b'x' * (200 << 20))\nprint('filled')\n"
    assert run_py(ex, fill, expected="filled\n", memory_limit_mb=512).status != Status.OK


def test_symlink_to_host_file_reads_nothing(ex, secret_file):
    path, token = secret_file
    code = f"""
import os
os.symlink({path!r}, "leak")
print(open("leak").read(), end="")
"""
    result = run_py(ex, code, expected=token)
    assert result.status == Status.RE and "FileNotFoundError" in result.detail
    with open(path) as fh:
        assert fh.read() == token


def test_fork_bomb_is_bounded_and_cleaned_up(ex):
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    start = time.monotonic()
    result = run_py(ex, code, expected="", time_limit_s=2.0)
    assert result.status in (Status.TLE, Status.RE), result
    assert time.monotonic() - start < 20
    assert _running_in_slot() == []


def test_thread_bomb_is_bounded(ex):
    code = ("import threading, time\nwhile True:\n"
            "    threading.Thread(target=time.sleep, args=(100,)).start()\n")
    start = time.monotonic()
    result = run_py(ex, code, expected="", time_limit_s=2.0)
    # thread creation fails at NPROC / pids.max; the sleeping threads keep it alive until the
    # wall limit (TLE), or it dies of the RuntimeError first (RE)
    assert result.status in (Status.TLE, Status.RE), result
    assert time.monotonic() - start < 20
    assert _running_in_slot() == []


def test_two_gigabyte_allocation_is_mle(ex):
    py = run_py(ex, "x = bytearray(2 * 1024 ** 3)\nprint(len(x))", expected="2147483648\n")
    assert py.status == Status.MLE
    cpp = ex.run(Submission(id="alloc", language="cpp", memory_limit_mb=256, time_limit_s=5,
                            code="#include <vector>\n#include <cstdio>\nint main(){"
                                 "std::vector<char> v(2000000000, 1);"
                                 "std::printf(\"%d\", (int)v[12345]);}",
                            tests=[StdioTest("", "1")]))
    assert cpp.tests[0].status == Status.MLE, cpp


def test_cpu_spin_and_sleep_hit_time_limits(ex):
    start = time.monotonic()
    spin = run_py(ex, "while True:\n    pass\n", time_limit_s=1.0)
    assert spin.status == Status.TLE and time.monotonic() - start < 10
    start = time.monotonic()
    nap = run_py(ex, "import time\ntime.sleep(60)\n", time_limit_s=1.0)
    assert nap.status == Status.TLE and time.monotonic() - start < 10


def test_cpu_time_over_the_limit_is_tle_even_below_the_rlimit(ex):
    burn = ("import time\nt = time.process_time()\nwhile time.process_time() - t < 2.6:\n"
            "    pass\nprint('done')\n")
    # 2.6 s of CPU: over a 2 s limit (+0.3 s start-up) but under its CPU rlimit (3 s) and wall
    # limit (5 s, room for a loaded machine)
    result = run_py(ex, burn, expected="done\n", time_limit_s=2.0)
    assert result.status == Status.TLE and "CPU time" in result.detail, result
    assert run_py(ex, burn, expected="done\n", time_limit_s=4.0).status == Status.OK
    prog = ex.run(Submission(id="burn", language="python", code=burn,
                             test_program="assert True\n", time_limit_s=2.0))
    assert prog.tests[0].status == Status.TLE and "CPU time" in prog.tests[0].detail, prog
    nap = run_py(ex, "import time\ntime.sleep(4)\nprint('done')\n", expected="done\n",
                 time_limit_s=1.0)
    assert nap.status == Status.TLE and "wall" in nap.detail, nap


def test_one_gigabyte_of_stdout_is_ole(ex):
    start = time.monotonic()
    code = "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(chunk)\n"
    result = run_py(ex, code, time_limit_s=20.0)
    assert result.status == Status.OLE
    assert time.monotonic() - start < 20


def test_double_forked_daemon_does_not_outlive_the_test(ex, tmp_path):
    code = """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(120)
    os._exit(0)
time.sleep(0.2)
print("done")
"""
    assert run_py(ex, code, expected="done\n").status == Status.OK
    assert _running_in_slot() == []  # the daemon died with the sandbox's pid namespace


@pytest.mark.parametrize("lang,code,test_program", [
    ("python", "def add(a, b):\n    return a - b\nraise SystemExit(0)\n",
     "assert add(1, 2) == 3\n"),
    ("python", "import os\ndef add(a, b):\n    os._exit(0)\n", "assert add(1, 2) == 3\n"),
    ("python", "import sys\ndef add(a, b):\n    print('\\n'); sys.stdout.flush(); exit()\n",
     "assert add(1, 2) == 3\n"),
    ("cpp", "#include <cstdlib>\nint add(int a, int b) { std::exit(0); }\n",
     "#include <cassert>\nint main() { assert(add(1, 2) == 3); }\n"),
    ("java", "class Solution { int add(int a, int b) { System.exit(0); return 0; } }\n",
     "public class Main { public static void main(String[] args) {\n"
     "  if (new Solution().add(1, 2) != 3) throw new AssertionError(); } }\n"),
])
def test_exit_zero_before_asserts_fails(ex, lang, code, test_program):
    res = ex.run(Submission(id="exit0", language=lang, code=code, test_program=test_program))
    assert res.status == Status.WA and res.pass_rate == 0.0, res


FRAME_WALK = """
import os, sys
def add(a, b):
    frame = sys._getframe()
    while frame is not None:  # every frame up to the harness: print any token-like bytes
        for value in list(frame.f_locals.values()) + list(frame.f_globals.values()):
            if isinstance(value, bytes) and len(value) == 32:
                os.write(1, b"\\n" + value + b"\\n")
                os._exit(0)
        frame = frame.f_back
    os._exit(0)
"""
CPP_TEST = "#include <cassert>\nint main() { assert(add(1, 2) == 3); }\n"


@pytest.mark.parametrize("lang,code,status", [
    ("python", FRAME_WALK, Status.WA),
    ("python", "import gc, os\ndef add(a, b):\n    gc.get_objects()\n    os._exit(0)\n", Status.RE),
    ("python", "import ctypes\ndef add(a, b):\n    ctypes.string_at(id(a), 64)\n", Status.RE),
    ("python", "import sys\ndef add(a, b):\n    sys.modules['__main__']._finished()\n",
     Status.RE),
    ("python", "import sys\ndef add(a, b):\n    sys.audit('aletheia.finished')\n", Status.RE),
    ("python", "import sys\ndef add(a, b):\n    sys.settrace(lambda *a: None)\n", Status.RE),
    ("cpp", "#include <iostream>\n#include <string>\n#include <unistd.h>\n"
            "struct Early { Early() { std::string t; std::getline(std::cin, t);\n"
            "  std::cout << \"\\n\" << t << \"\\n\" << std::flush; _exit(0); } } early;\n"
            "int add(int a, int b) { return a - b; }\n", Status.WA),
    ("cpp", "#include <unistd.h>\n__attribute__((constructor(101))) static void f() { _exit(0); }\n"
            "int add(int a, int b) { return a - b; }\n", Status.CE),
])
def test_code_hunting_for_the_token_cannot_fake_the_end_of_a_test_program(ex, lang, code, status):
    test_program = "assert add(1, 2) == 3\n" if lang == "python" else CPP_TEST
    res = ex.run(Submission(id="hunt", language=lang, code=code, test_program=test_program))
    assert res.status == status and res.pass_rate == 0.0, res


@pytest.mark.parametrize("lang,code,test_program", [
    ("python", "def add(a, b):\n    return a + b\n", "assert add(1, 2) == 3\n"),
    ("python", "from typing import List\nimport collections, dataclasses, enum, traceback\n"
               "P = collections.namedtuple('P', 'x y')\n"
               "def add(a, b):\n    try:\n        raise ValueError\n    except ValueError:\n"
               "        traceback.format_exc()\n    return P(a, b).x + b\n",
     "assert add(1, 2) == 3\n"),
    ("cpp", "int add(int a, int b) { return a + b; }\n",
     "#include <cassert>\nint main() { assert(add(1, 2) == 3); }\n"),
    ("java", "class Solution { int add(int a, int b) { return a + b; } }\n",
     "public class Main { public static void main(String[] args) {\n"
     "  if (new Solution().add(1, 2) != 3) throw new AssertionError(); } }\n"),
])
def test_honest_test_programs_pass_control(ex, lang, code, test_program):
    res = ex.run(Submission(id="honest", language=lang, code=code, test_program=test_program))
    assert res.status == Status.OK and res.pass_rate == 1.0, res


def test_always_true_eq_cannot_pass_call_tests(ex):
    code = ("class Liar:\n    def __eq__(self, other):\n        return True\n"
            "    __hash__ = object.__hash__\n"
            "def solve(x):\n    return Liar()\n")
    res = ex.run(Submission(id="eq", language="python", code=code, entry_point="solve",
                            inputs=[[1], [2]], expected=[2, 4]))
    assert [t.status for t in res.tests] == [Status.WA, Status.WA] and res.pass_rate == 0.0
    honest = ex.run(Submission(id="eq", language="python", code="def solve(x):\n    return 2*x\n",
                               entry_point="solve", inputs=[[1], [2]], expected=[2, 4]))
    assert honest.pass_rate == 1.0


def test_cpp_include_of_host_file_and_dev_zero_is_ce(ex, secret_file):
    path, token = secret_file
    res = ex.run(Submission(id="inc", language="cpp", code=f'#include "{path}"\nint main(){{}}\n',
                            tests=[StdioTest("", "")]))
    assert res.status == Status.CE and token not in res.compile["stderr"]
    start = time.monotonic()
    res = ex.run(Submission(id="zero", language="cpp", code="#include </dev/zero>\nint main(){}\n",
                            tests=[StdioTest("", "")]))
    assert res.status == Status.CE and res.pass_rate == 0.0, res
    assert time.monotonic() - start < 90
