"""SandboxFusion client (aletheia_ray/sandbox/remote.py) against a loopback /run_code server that
runs programs in our local bubblewrap executor (tests/sandboxfusion_loopback.py)."""
from __future__ import annotations

import time

import pytest

from aletheia_ray.sandbox.executor import Executor
from aletheia_ray.sandbox.remote import SandboxFusionBackend, verdict_from_response
from aletheia_ray.sandbox.types import Status, StdioTest, Submission
from aletheia_ray.sandbox.types import TestResult as Verdict
from sandboxfusion_loopback import LoopbackSandboxFusion

LOOPBACK_SLOT = 41  # distinct from the executor's own tests and the pool tests (slots 50+)

ADD = "a, b = map(int, input().split())\nprint(a + b)\n"
CPP_ADD = "#include <iostream>\nint main(){long a,b; std::cin>>a>>b; std::cout<<a+b<<'\\n';}\n"
CPP_TEST = "int main(){\n  assert(inc(1) == 2);\n  assert(inc(5) == 6);\n}\n"
JAVA_ADD = ("import java.util.*;\npublic class Main { public static void main(String[] a) {\n"
            "Scanner s = new Scanner(System.in); System.out.println(s.nextLong() + s.nextLong());"
            "}}\n")
JAVA_TEST = ("public class Main { public static void main(String[] a) {\n"
             "  if (new Solution().inc(1) != 2) throw new AssertionError(); Main.done(); }\n"
             "  static void done() {} }\n")
STDIO = [StdioTest("1 2", "3"), StdioTest("20 22", "42"), StdioTest("2 2", "99999")]

SUBMISSIONS = [
    Submission("py-stdio", "python", ADD, tests=STDIO),  # 2 of 3 (the third test is wrong)
    Submission("cpp-stdio", "cpp", CPP_ADD, tests=STDIO[:2]),
    Submission("cpp-ce", "cpp", "int main() { return undefined_name; }", tests=STDIO),
    Submission("java-stdio", "java", JAVA_ADD, tests=STDIO[:1]),
    Submission("py-program", "python", "def inc(x):\n    return x + 1\n",
               test_program="assert inc(1) == 2\nassert inc(5) == 6\n"),
    Submission("py-systemexit", "python", "import sys\ndef inc(x):\n    return x\nsys.exit(0)\n",
               test_program="assert inc(1) == 2\n"),
    Submission("cpp-program", "cpp", "#include <cassert>\nint inc(int x){ return x + 1; }\n",
               test_program=CPP_TEST),
    Submission("cpp-exit-before-asserts", "cpp",
               "#include <cassert>\n#include <cstdlib>\nint inc(int x){ std::exit(0); }\n",
               test_program=CPP_TEST),
    Submission("java-program", "java", "class Solution { int inc(int x) { return x + 1; } }\n",
               test_program=JAVA_TEST),
    Submission("java-exit-before-asserts", "java",
               "class Solution { int inc(int x) { System.exit(0); return x; } }\n",
               test_program=JAVA_TEST),
    Submission("py-call-expected", "python", "def f(x):\n    return [x, x / 2]\n",
               entry_point="f", inputs=[[1], [3], [4]], expected=[[1, 0.5], [3, 1.5], [4, 0.0]]),
    Submission("py-call-always-equal", "python",
               "class Liar:\n    def __eq__(self, other):\n        return True\n"
               "def f(x):\n    return Liar()\n",
               entry_point="f", inputs=[[1], [2]], reference="def f(x):\n    return x * 2\n"),
    Submission("py-call-reference", "python", "def f(x):\n    return x + x\n",
               entry_point="f", inputs=[[1], [2], [-7]], reference="def f(x):\n    return x * 2\n"),
    Submission("py-syntax", "python", "def f(:\n", tests=STDIO[:1]),
    Submission("py-spin", "python", "while True:\n    pass\n", tests=STDIO[:1], time_limit_s=1.0),
    Submission("py-crash", "python", "raise ValueError('boom')\n", tests=STDIO[:1]),
]
EXPECTED = {  # id -> (status, pass_rate, per-test statuses)
    "py-stdio": (Status.WA, 2 / 3, ["OK", "OK", "WA"]),
    "cpp-stdio": (Status.OK, 1.0, ["OK", "OK"]),
    "cpp-ce": (Status.CE, 0.0, []),
    "java-stdio": (Status.OK, 1.0, ["OK"]),
    "py-program": (Status.OK, 1.0, ["OK"]),
    "py-systemexit": (Status.WA, 0.0, ["WA"]),
    "cpp-program": (Status.OK, 1.0, ["OK"]),
    "cpp-exit-before-asserts": (Status.WA, 0.0, ["WA"]),
    "java-program": (Status.OK, 1.0, ["OK"]),
    "java-exit-before-asserts": (Status.WA, 0.0, ["WA"]),
    "py-call-expected": (Status.WA, 2 / 3, ["OK", "OK", "WA"]),
    "py-call-always-equal": (Status.WA, 0.0, ["WA", "WA"]),
    "py-call-reference": (Status.OK, 1.0, ["OK", "OK", "OK"]),
    "py-syntax": (Status.CE, 0.0, []),
    "py-spin": (Status.TLE, 0.0, ["TLE"]),
    "py-crash": (Status.RE, 0.0, ["RE"]),
}


@pytest.fixture(scope="module")
def executor():
    with Executor(isolation="bwrap", slot=LOOPBACK_SLOT) as ex:
        yield ex


def _summary(result):
    return result.status, result.pass_rate, [t.status.value for t in result.tests]


@pytest.mark.sandbox
def test_sandboxfusion_client_against_loopback_server_backed_by_local_executor(executor):
    with LoopbackSandboxFusion(executor) as server:
        backend = SandboxFusionBackend(server.url, max_concurrency=4, retries=0)
        results = backend.run_many(SUBMISSIONS)
        sent = list(server.requests)
    assert [r.id for r in results] == [s.id for s in SUBMISSIONS]
    for result in results:
        status, rate, tests = _summary(result)
        want = EXPECTED[result.id]
        assert (status, tests) == (want[0], want[2]), (result.id, result.tests, result.detail)
        assert rate == pytest.approx(want[1]), result.id
        assert result.isolation == "remote"
    # one request per test; the C++ compile error stops after the first request
    per_code = {}
    for payload in sent:
        per_code.setdefault(payload["code"], []).append(payload)
    assert len(per_code["int main() { return undefined_name; }"]) == 1
    assert sorted(p["stdin"] for p in per_code[ADD]) == ["1 2", "2 2", "20 22"]
    # expected outputs never leave the host
    assert not any("99999" in p["stdin"] or "99999" in p["code"] for p in sent)
    assert all(set(p) >= {"code", "language", "compile_timeout", "run_timeout",
                          "memory_limit_MB", "stdin", "files"} for p in sent)


@pytest.mark.sandbox
def test_sandboxfusion_client_agrees_with_local_executor_on_same_submissions(executor):
    with LoopbackSandboxFusion(executor) as server:
        remote = SandboxFusionBackend(server.url, max_concurrency=2).run_many(SUBMISSIONS)
    local = [executor.run(sub) for sub in SUBMISSIONS]
    for r, l in zip(remote, local):
        assert _summary(r)[0] == _summary(l)[0] and _summary(r)[2] == _summary(l)[2], r.id
        assert r.pass_rate == pytest.approx(l.pass_rate), r.id


@pytest.mark.sandbox
def test_sandboxfusion_client_retries_loopback_server_returning_500_twice(executor):
    sub = Submission("retry", "python", ADD, tests=STDIO[:1])
    with LoopbackSandboxFusion(executor, mode="fail_first:2") as server:
        result = SandboxFusionBackend(server.url, retries=3, backoff_s=0.05).run(sub)
        assert len(server.requests) == 3
    assert (result.status, result.pass_rate) == (Status.OK, 1.0)
    with LoopbackSandboxFusion(executor, mode="fail_first:2") as server:
        result = SandboxFusionBackend(server.url, retries=1, backoff_s=0.05).run(sub)
        assert len(server.requests) == 2
    assert (result.status, result.pass_rate) == (Status.INFRA, None)
    assert "HTTP 500" in result.detail and "2 attempts" in result.detail


def test_sandboxfusion_client_maps_sandbox_error_to_infra_error(executor):
    sub = Submission("sbx-error", "python", ADD, tests=STDIO)
    with LoopbackSandboxFusion(executor, mode="sandbox_error") as server:
        result = SandboxFusionBackend(server.url, retries=3, backoff_s=0.05).run(sub)
        assert len(server.requests) == 3  # one per test, a SandboxError is not an HTTP retry
    assert result.status == Status.INFRA and result.pass_rate is None
    assert "SandboxError" in result.detail and "container died" in result.detail


def test_sandboxfusion_client_times_out_on_hanging_loopback_server(executor):
    sub = Submission("hang", "python", ADD, tests=STDIO[:1])
    with LoopbackSandboxFusion(executor, mode="hang") as server:
        backend = SandboxFusionBackend(server.url, retries=1, timeout_s=0.5, backoff_s=0.05)
        start = time.monotonic()
        result = backend.run(sub)
        elapsed = time.monotonic() - start
        assert len(server.requests) == 2
    assert result.status == Status.INFRA and result.pass_rate is None
    assert "no answer within 0.5 s" in result.detail
    assert elapsed < 5.0


def test_sandboxfusion_client_does_not_retry_http_400(executor):
    sub = Submission("bad", "python", ADD, tests=STDIO[:1])
    with LoopbackSandboxFusion(executor, mode="bad_request") as server:
        result = SandboxFusionBackend(server.url, retries=3, backoff_s=0.05).run(sub)
        assert len(server.requests) == 1
    assert result.status == Status.INFRA and "HTTP 400" in result.detail


def test_sandboxfusion_client_connection_refused_is_infra_error():
    backend = SandboxFusionBackend("http://127.0.0.1:9", retries=1, backoff_s=0.01)
    result = backend.run(Submission("refused", "python", ADD, tests=STDIO[:1]))
    assert result.status == Status.INFRA and result.pass_rate is None
    assert "connection error" in result.detail


def test_verdict_from_response_maps_run_statuses():
    def ok(out):
        return Verdict(Status.OK if out == "3\n" else Status.WA)

    run = {"status": "Finished", "execution_time": 0.1, "return_code": 0, "stdout": "3\n",
           "stderr": ""}
    assert verdict_from_response({"status": "Success", "run_result": run}, ok, {}).status == Status.OK
    wa = {**run, "stdout": "4\n"}
    assert verdict_from_response({"status": "Success", "run_result": wa}, ok, {}).status == Status.WA
    tle = {**run, "status": "TimeLimitExceeded", "return_code": None}
    assert verdict_from_response({"status": "Failed", "run_result": tle}, ok, {}).status == Status.TLE
    sig = {**run, "status": "Error", "return_code": -11}
    v = verdict_from_response({"status": "Failed", "run_result": sig}, ok, {})
    assert (v.status, v.detail) == (Status.RE, "signal 11")
    mem = {**run, "status": "Error", "return_code": 1, "stderr": "Traceback\nMemoryError\n"}
    assert verdict_from_response({"status": "Failed", "run_result": mem}, ok, {}).status == Status.MLE
    info: dict = {}
    ce = {"status": "Failed", "run_result": None, "compile_result": {
        "status": "Finished", "return_code": 1, "stderr": "error: x", "execution_time": 0.3}}
    assert verdict_from_response(ce, ok, info).status == Status.CE and info["status"] == "CE"
    assert verdict_from_response({"status": "Failed"}, ok, {}).status == Status.INFRA
    assert verdict_from_response({"status": "SandboxError", "message": "m"}, ok, {}).status \
        == Status.INFRA


def test_sandboxfusion_backend_rejects_bad_url():
    with pytest.raises(ValueError, match="http"):
        SandboxFusionBackend("localhost:8080")
