"""Executor statuses, checkers, value comparison, row validation, isolation opt-in, infra errors."""
from __future__ import annotations

import logging
import math
import threading

import pytest

from aletheia_ray.sandbox import isolation as iso
from aletheia_ray.sandbox.calls import ExpectedCache
from aletheia_ray.sandbox.checkers import checker
from aletheia_ray.sandbox.executor import Executor, submission_from_row
from aletheia_ray.sandbox.types import Status, StdioTest, Submission
from aletheia_ray.sandbox.values import Opaque, decode, values_match

SLOT = 70


# ---- pure host-side logic ---------------------------------------------------------------------
def test_checkers_semantics():
    assert checker("exact")("1 2\n", "1 2\n") and not checker("exact")("1 2", "1 2\n")
    assert checker("tokens")("1   2\n\n", "1 2") and not checker("tokens")("1 2 3", "1 2")
    assert checker("float")("0.3333333", "0.33333333") and not checker("float")("0.34", "0.33")
    assert checker("float")("1000000.5", "1000000.0")  # within rel 1e-6
    assert not checker("float")("nan", "0.5") and not checker("float")("abc", "abd")
    assert checker("sandboxfusion")("YES \n1.000001\n", "yes\n1.0")
    assert not checker("sandboxfusion")("yes\n1.1", "yes\n1.0")
    with pytest.raises(ValueError, match="checker: unknown 'fuzzy'"):
        checker("fuzzy")


def test_values_match_follows_humanevalplus():
    assert values_match(decode(["tuple", [["int", 1]]]), (1,))
    assert not values_match((1, 2), [1, 2])  # exact types, as evalplus
    assert values_match((1, 2), [1, 2], loose_sequences=True)  # expected given as JSON
    assert values_match(0.1 + 0.2, 0.3) and not values_match(0.31, 0.3)
    assert values_match([1.0, 2.00001], [1.0, 2.0], atol=1e-4)
    assert not values_match(float("nan"), float("nan"))
    assert values_match(True, 1)  # Python equality, as evalplus
    liar = decode(["other", "__main__.Liar", "<Liar>"])
    assert isinstance(liar, Opaque) and not values_match(liar, 3) and not values_match(liar, None)
    assert decode(["bigint", hex(10 ** 5000)]) == 10 ** 5000
    assert decode(["float", "inf"]) == math.inf
    with pytest.raises(ValueError, match="unknown value tag"):
        decode(["pickle", "x"])


def test_submission_from_row_names_the_bad_field():
    good = {"id": 1, "language": "Python3", "code": "print(1)", "tests": [{"input": "", "output": "1"}]}
    sub = submission_from_row(good)
    assert sub.id == "1" and sub.language == "python" and sub.checker == "tokens"
    cases = [
        ({**good, "tests": [{"input": 1, "output": "1"}]}, "tests[0]"),
        ({**good, "checker": "fuzzy"}, "'checker'"),
        ({**good, "test_program": "x"}, "exactly one of"),
        ({**good, "colour": "red"}, "'colour'"),
        ({**good, "language": "cobol"}, "cobol"),
        ({**good, "time_limit_s": -1}, "'time_limit_s'"),
        ({"id": "x", "language": "python", "code": "", "entry_point": "f", "inputs": [[1]]},
         "expected|reference"),
        ({"id": "x", "language": "cpp", "code": "", "entry_point": "f", "inputs": [[1]],
          "expected": [1]}, "python only"),
        ({"id": "x", "language": "python", "code": "", "entry_point": "f", "inputs": [[1]],
          "expected": [1, 2]}, "as long as inputs"),
        ({"language": "python", "code": "", "test_program": ""}, "'id'"),
    ]
    for row, needle in cases:
        with pytest.raises(ValueError) as err:
            submission_from_row(row)
        assert needle in str(err.value), (row, str(err.value))


# ---- real sandbox ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ex():
    with Executor(slot=SLOT) as executor:
        yield executor


def _one(ex, language, code, stdin="", expected="", **kw):
    res = ex.run(Submission(id="t", language=language, code=code,
                            tests=[StdioTest(stdin, expected)], **kw))
    return res


@pytest.mark.sandbox
@pytest.mark.parametrize("language,code,stdin,expected,status,detail", [
    ("python", "print(int(input()) + 1)", "41", "42", Status.OK, ""),
    ("python", "print(int(input()) + 2)", "41", "42", Status.WA, ""),
    ("python", "import sys\nsys.exit(4)", "", "", Status.RE, "exit 4"),
    ("python", "import os\nos.kill(os.getpid(), 11)", "", "", Status.RE, "signal 11"),
    ("python", "1/0", "", "", Status.RE, "ZeroDivisionError"),
    ("cpp", "#include <cstdio>\nint main(){int*p=nullptr; std::printf(\"%d\", *p);}", "", "0",
     Status.RE, "signal 11"),
    ("cpp", "#include <iostream>\nint main(){long long a,b;std::cin>>a>>b;std::cout<<a*b;}",
     "100000 100000", "10000000000", Status.OK, ""),
    ("java", "public class Main { public static void main(String[] a) { int[] x = new int[1];"
             " x[2] = 1; } }", "", "", Status.RE, "ArrayIndexOutOfBounds"),
    ("java", "public class Main { public static void main(String[] a) {"
             " long[] x = new long[400_000_000]; System.out.println(x.length); } }", "", "",
     Status.MLE, "OutOfMemoryError"),
])
def test_run_statuses(ex, language, code, stdin, expected, status, detail):
    res = _one(ex, language, code, stdin, expected, memory_limit_mb=256, time_limit_s=5)
    assert res.tests[0].status == status, res
    assert detail in res.tests[0].detail
    assert res.pass_rate == (1.0 if status == Status.OK else 0.0)
    assert res.isolation == "full"


@pytest.mark.sandbox
@pytest.mark.parametrize("language,code", [
    ("python", "def f(:\n  pass"), ("cpp", "int main() { return }"),
    ("java", "public class Main { void }"),
])
def test_compile_errors_are_ce_for_the_submission(ex, language, code):
    res = _one(ex, language, code)
    assert res.status == Status.CE and res.pass_rate == 0.0 and res.tests == []
    assert res.compile["status"] == "CE" and res.compile["stderr"]


@pytest.mark.sandbox
def test_cpp_compiles_once_then_each_test_runs_the_binary(ex):
    code = "#include <iostream>\nint main(){int x; std::cin >> x; std::cout << x * x;}"
    tests = [StdioTest(str(i), str(i * i)) for i in range(6)]
    res = ex.run(Submission(id="sq", language="cpp", code=code, tests=tests))
    assert res.status == Status.OK and len(res.tests) == 6
    assert res.compile["status"] == "OK" and res.compile["time_s"] > 0.2
    assert sum(t.time_s for t in res.tests) < res.compile["time_s"]  # no recompilation per test


@pytest.mark.sandbox
def test_call_tests_charge_hangs_and_crashes_to_their_own_input(ex):
    code = ("import os\ndef f(x):\n"
            "    if x == 2:\n        while True: pass\n"
            "    if x == 4:\n        os._exit(0)\n"
            "    if x == 5:\n        return bytearray(1 << 31)\n"
            "    return x * 10\n")
    res = ex.run(Submission(id="c", language="python", code=code, entry_point="f",
                            inputs=[[1], [2], [3], [4], [5], [6]],
                            reference="def f(x):\n    return x * 10\n",
                            time_limit_s=1.0, memory_limit_mb=256))
    assert [t.status for t in res.tests] == [Status.OK, Status.TLE, Status.OK, Status.RE,
                                             Status.MLE, Status.OK], res.tests
    assert res.pass_rate == pytest.approx(0.5)


@pytest.mark.sandbox
def test_generated_python_can_use_numpy_in_the_sandbox(ex):
    # scripts/install.sh installs Debian's python3-numpy; its libblas.so.3 resolves through
    # /etc/alternatives, bound read-only (HumanEval/71 candidates import numpy)
    code = "import numpy as np\ndef f(xs):\n    return float(np.dot(np.array(xs), np.array(xs)))\n"
    res = ex.run(Submission(id="np", language="python", code=code, entry_point="f",
                            inputs=[[[1.0, 2.0]], [[3.0]]], expected=[5.0, 9.0]))
    assert res.status == Status.OK and res.pass_rate == 1.0, [t.detail[-200:] for t in res.tests]


@pytest.mark.sandbox
def test_call_tests_missing_entry_point_and_tuple_types(ex):
    res = ex.run(Submission(id="c", language="python", code="def g(x):\n    return x\n",
                            entry_point="f", inputs=[[1]], expected=[1]))
    assert res.tests[0].status == Status.RE and "KeyError" in res.tests[0].detail
    ref = "def f(x):\n    return (x, x)\n"
    as_list = ex.run(Submission(id="c", language="python", code="def f(x):\n    return [x, x]\n",
                                entry_point="f", inputs=[[1]], reference=ref))
    assert as_list.tests[0].status == Status.WA  # reference returns a tuple: exact types


@pytest.mark.sandbox
def test_reference_outputs_are_cached_per_executor(ex):
    ref = "def f(x):\n    return x + 1\n"
    before = len(ex.expected_cache)
    for code in ("def f(x):\n    return x + 1\n", "def f(x):\n    return x\n"):
        ex.run(Submission(id="c", language="python", code=code, entry_point="f",
                          inputs=[[1], [2]], reference=ref))
    assert len(ex.expected_cache) == before + 1  # the reference ran once for both candidates
    assert "_expected_cache" not in vars(ex)  # owned as ex.expected_cache, not written by calls.py


def test_expected_cache_evicts_the_oldest_entry():
    cache = ExpectedCache(max_entries=2)
    cache.put("a", [{"ok": True}])
    cache.put("b", [])
    cache.put("b", [{"ok": False}])  # a replaced key evicts nothing
    assert len(cache) == 2 and cache.get("a") == [{"ok": True}]
    cache.put("c", [])
    assert cache.get("a") is None and cache.get("b") == [{"ok": False}] and cache.get("c") == []


@pytest.mark.sandbox
def test_program_printing_bwrap_lookalike_is_re_not_infra(ex):
    code = "import sys\nsys.stderr.write('bwrap: fake infrastructure failure\\n')\nsys.exit(1)"
    res = _one(ex, "python", code)
    assert res.status == Status.RE and res.pass_rate == 0.0


@pytest.mark.sandbox
def test_broken_sandbox_is_infra_error_with_unknown_pass_rate(ex, monkeypatch):
    real = iso.bwrap_argv
    monkeypatch.setattr(iso, "bwrap_argv", lambda *a, **k: real(*a, **k) + ["--no-such-option"])
    res = _one(ex, "python", "print(1)", expected="1")
    assert res.status == Status.INFRA and res.pass_rate is None
    assert "bwrap" in res.detail


@pytest.mark.sandbox
def test_unisolated_needs_explicit_opt_in_and_is_loud(caplog):
    with pytest.raises(RuntimeError, match="allow_unisolated=True"):
        Executor(isolation="none", slot=SLOT + 1)
    with caplog.at_level(logging.WARNING):
        with Executor(isolation="none", allow_unisolated=True, slot=SLOT + 1) as bare:
            assert bare.probe().level == "none"
            assert "MISSING" in bare.probe().layers["namespaces"]
            res = _one(bare, "python", "print(int(input()) * 3)", "3", "9")
            assert res.status == Status.OK and res.isolation == "none"
    assert "WITHOUT NAMESPACE ISOLATION" in caplog.text


@pytest.mark.sandbox
def test_two_slots_run_concurrently_with_distinct_uids():
    results = {}

    def work(slot):
        with Executor(slot=slot) as e:
            results[slot] = e.run(Submission(
                id=str(slot), language="python", code="import os, time\ntime.sleep(0.5)\n"
                "print(os.getuid())", tests=[StdioTest("", str(iso.SANDBOX_UID_BASE + slot))]))

    threads = [threading.Thread(target=work, args=(s,)) for s in (SLOT + 2, SLOT + 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status == Status.OK for r in results.values()), results


def _is_subreaper() -> bool:
    import ctypes

    flag = ctypes.c_int(-1)
    assert ctypes.CDLL(None).prctl(37, ctypes.byref(flag), 0, 0, 0) == 0  # PR_GET_CHILD_SUBREAPER
    return bool(flag.value)


def test_subreaper_flag_lives_only_while_an_executor_is_open():
    """The flag is process-wide: left set, this process would adopt (and never reap) orphans of
    every other descendant, e.g. a Ray worker killed later in the same driver (seen in CI)."""
    already_open = iso._subreaper_users  # other tests' executors (module fixtures) may be open
    assert _is_subreaper() == (already_open > 0)
    first = Executor(slot=SLOT + 4)
    second = Executor(slot=SLOT + 5)
    assert _is_subreaper() and first.subreaper and second.subreaper
    first.close()
    first.close()  # idempotent: must not release twice
    assert _is_subreaper()
    second.close()
    assert iso._subreaper_users == already_open
    assert _is_subreaper() == (already_open > 0)
    if already_open == 0:
        return
    import subprocess
    out = subprocess.run(["python3", "-c", "from aletheia_ray.sandbox.executor import Executor\n"
                          f"e = Executor(slot={SLOT + 4}); e.close()\n"
                          "import ctypes; f = ctypes.c_int(-1)\n"
                          "ctypes.CDLL(None).prctl(37, ctypes.byref(f), 0, 0, 0); print(f.value)"],
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "0", out.stderr[-500:]
