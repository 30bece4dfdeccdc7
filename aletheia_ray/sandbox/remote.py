"""SandboxFusion client: run a ``Submission`` on a remote SandboxFusion deployment.

Speaks SandboxFusion's ``POST /run_code`` protocol: one request per test
(``{code, language, compile_timeout, run_timeout, memory_limit_MB, stdin, files}`` ->
``{status: Success|Failed|SandboxError, message, compile_result, run_result{status:
Finished|Error|TimeLimitExceeded, execution_time, return_code, stdout, stderr}}``).
Expected outputs never leave the host: stdout is compared here with the same checkers as the local
executor (``aletheia_ray.sandbox.checkers``).

* bounded concurrency: at most ``max_concurrency`` requests in flight per backend object;
* retries with exponential backoff on HTTP 5xx, timeouts and connection errors (``retries`` extra
  attempts); then the test is an ``InfraError`` (never a wrong answer);
* ``SandboxError`` from the server -> ``InfraError``; any InfraError test makes the submission
  ``InfraError`` with ``pass_rate=None``;
* compiled languages: the first test is sent alone; a compile error there ends the submission (CE)
  without sending the others (SandboxFusion recompiles per request, so this saves work).

Test-program style: for Python a random sentinel is printed after the appended test program and
checked here, so ``SystemExit(0)``/``os._exit(0)`` before the asserts fails. For C++/Java only the
exit code is checked remotely (a sentinel would need rewriting the test's ``main``) — use the local
executor when that matters. Call-test style: Python only, see ``remote_calls``.
Isolation is whatever the deployment provides (SandboxFusion without its Docker image has none).
"""
from __future__ import annotations

import logging
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

import requests

from aletheia_ray.sandbox.isolation import IsolationReport
from aletheia_ray.sandbox.types import Status, Submission, SubmissionResult, TestResult

log = logging.getLogger(__name__)

SF_LANGUAGE = {"python": "python", "cpp": "cpp", "java": "java"}
COMPILED = {"cpp", "java"}
_MLE_MARKERS = ("MemoryError", "std::bad_alloc", "java.lang.OutOfMemoryError")
Judge = Callable[[str], TestResult]  # stdout of a clean exit -> verdict of one test


class RemoteInfraError(RuntimeError):
    """The remote sandbox did not give a usable answer (after retries)."""


class SandboxFusionBackend:
    """Client of one SandboxFusion deployment at ``url`` (e.g. ``http://host:8080``)."""

    def __init__(self, url: str, max_concurrency: int = 64, retries: int = 3,
                 timeout_s: Optional[float] = None, backoff_s: float = 0.5,
                 compile_timeout_s: float = 30.0):
        if not url or not url.startswith(("http://", "https://")):
            raise ValueError(f"SandboxFusion url must start with http:// or https://, got {url!r}")
        if max_concurrency < 1 or retries < 0:
            raise ValueError(f"need max_concurrency >= 1 and retries >= 0, got "
                             f"{max_concurrency}, {retries}")
        self.url = url.rstrip("/")
        self.retries = retries
        self.timeout_s = timeout_s  # HTTP timeout per request; None: compile + run limit + 30 s
        self.backoff_s = backoff_s
        self.compile_timeout_s = compile_timeout_s
        self.max_concurrency = max_concurrency
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=max_concurrency)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._pool = ThreadPoolExecutor(max_concurrency, thread_name_prefix="sandboxfusion")

    def probe(self) -> IsolationReport:
        return IsolationReport(level="remote", layers={
            "backend": f"SandboxFusion at {self.url}",
            "isolation": "provided by the deployment (none unless it runs SandboxFusion's image)"})

    def run(self, sub: Submission) -> SubmissionResult:
        return self.run_many([sub])[0]

    def run_many(self, subs: list[Submission]) -> list[SubmissionResult]:
        """Results in input order; requests of all submissions share the concurrency bound."""
        with ThreadPoolExecutor(min(len(subs), self.max_concurrency) or 1) as outer:
            return list(outer.map(self._run_one, subs))

    # ------------------------------------------------------------------ one submission
    def _run_one(self, sub: Submission) -> SubmissionResult:
        from aletheia_ray.sandbox.remote_calls import plan_tests

        try:
            language = SF_LANGUAGE[sub.language]
            tests = plan_tests(self, sub)  # [(code, stdin, judge)] one per test
        except KeyError:
            return _result(sub, Status.INFRA, [TestResult(Status.INFRA, detail=(
                f"language {sub.language!r} not supported by the SandboxFusion backend"))])
        except RemoteInfraError as err:  # e.g. the reference solution could not be run
            return _result(sub, Status.INFRA, [TestResult(Status.INFRA, detail=str(err))])
        except ValueError as err:  # malformed submission (named by plan_tests)
            return _result(sub, Status.INFRA, [TestResult(Status.INFRA, detail=str(err))])
        compile_info: dict[str, Any] = {}
        verdicts: list[Optional[TestResult]] = [None] * len(tests)
        first = 0
        if sub.language in COMPILED and tests:  # one compile check before fanning out
            verdicts[0] = self._run_test(sub, language, tests[0], compile_info)
            if verdicts[0].status == Status.CE:
                return _result(sub, Status.CE, [], compile_info)
            first = 1
        futures = [self._pool.submit(self._run_test, sub, language, t, compile_info)
                   for t in tests[first:]]
        for i, fut in enumerate(futures, start=first):
            verdicts[i] = fut.result()
        done = [v for v in verdicts if v is not None]
        if any(v.status == Status.CE for v in done):
            return _result(sub, Status.CE, [], compile_info)
        status = next((v.status for v in done if v.status == Status.INFRA),
                      next((v.status for v in done if v.status != Status.OK), Status.OK))
        return _result(sub, status, done, compile_info)

    def _run_test(self, sub: Submission, language: str, test: tuple[str, str, Judge],
                  compile_info: dict) -> TestResult:
        code, stdin, judge = test
        try:
            resp = self.run_code(code, language, stdin, sub.time_limit_s, sub.memory_limit_mb)
        except RemoteInfraError as err:
            return TestResult(Status.INFRA, detail=str(err))
        return verdict_from_response(resp, judge, compile_info)

    # ------------------------------------------------------------------ transport
    def run_code(self, code: str, language: str, stdin: str, run_timeout_s: float,
                 memory_limit_mb: int) -> dict:
        """One ``/run_code`` call with retries; returns the JSON body or raises RemoteInfraError."""
        payload = {"code": code, "language": language, "stdin": stdin, "files": {},
                   "compile_timeout": self.compile_timeout_s, "run_timeout": run_timeout_s,
                   "memory_limit_MB": memory_limit_mb}
        timeout = self.timeout_s or (self.compile_timeout_s + run_timeout_s + 30.0)
        error = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                with self._slots:
                    resp = self._session.post(f"{self.url}/run_code", json=payload, timeout=timeout)
            except requests.Timeout:
                error = f"no answer within {timeout:g} s"
                continue
            except requests.ConnectionError as err:
                error = f"connection error: {err}"
                continue
            if resp.status_code >= 500:
                error = f"HTTP {resp.status_code}: {resp.text[:200]}"
                continue
            if resp.status_code != 200:  # 4xx: our request is wrong, retrying will not help
                raise RemoteInfraError(f"SandboxFusion {self.url}/run_code rejected the request: "
                                       f"HTTP {resp.status_code}: {resp.text[:300]}")
            try:
                body = resp.json()
            except ValueError:
                raise RemoteInfraError(f"SandboxFusion {self.url}/run_code answered non-JSON: "
                                       f"{resp.text[:200]!r}") from None
            if not isinstance(body, dict) or "status" not in body:
                raise RemoteInfraError(f"SandboxFusion answer without 'status': {str(body)[:200]}")
            return body
        raise RemoteInfraError(f"SandboxFusion {self.url}/run_code failed after "
                               f"{self.retries + 1} attempts; last: {error}")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._session.close()


def verdict_from_response(body: dict, judge: Judge, compile_info: dict) -> TestResult:
    """Map one ``/run_code`` answer to a test verdict (CE is reported as a test with status CE)."""
    if body.get("status") == "SandboxError":
        return TestResult(Status.INFRA, detail=f"SandboxError: {str(body.get('message'))[:300]}")
    comp = body.get("compile_result")
    if comp:
        compile_info.setdefault("status", "OK")
        compile_info["time_s"] = float(comp.get("execution_time") or 0.0)
        if comp.get("status") != "Finished" or comp.get("return_code") not in (0, None):
            compile_info.update(status="CE", stderr=str(comp.get("stderr") or "")[-2000:])
            if comp.get("status") == "TimeLimitExceeded":
                compile_info["stderr"] = "compile timeout"
            return TestResult(Status.CE, detail="compile error")
    run = body.get("run_result")
    if not run:
        return TestResult(Status.INFRA, detail=f"no run_result (status {body.get('status')!r}, "
                                               f"message {str(body.get('message'))[:200]!r})")
    time_s = float(run.get("execution_time") or 0.0)
    stderr = str(run.get("stderr") or "")
    if run.get("status") == "TimeLimitExceeded":
        return TestResult(Status.TLE, time_s, "wall time limit (remote)")
    code = run.get("return_code")
    if run.get("status") != "Finished" or code != 0:
        if any(marker in stderr for marker in _MLE_MARKERS):
            return TestResult(Status.MLE, time_s, stderr.strip().splitlines()[-1][:200])
        detail = f"signal {-code}" if isinstance(code, int) and code < 0 else f"exit {code}"
        tail = stderr.strip().splitlines()[-1][:200] if stderr.strip() else ""
        return TestResult(Status.RE, time_s, f"{detail}: {tail}" if tail else detail)
    verdict = judge(str(run.get("stdout") or ""))
    verdict.time_s = time_s
    return verdict


def _result(sub: Submission, status: Status, tests: list[TestResult],
            compile_info: Optional[dict] = None) -> SubmissionResult:
    if status == Status.INFRA:
        rate: Optional[float] = None
    elif status == Status.CE or not tests:
        rate = 0.0
    else:
        rate = sum(t.status == Status.OK for t in tests) / len(tests)
    return SubmissionResult(id=sub.id, status=status, pass_rate=rate, tests=tests,
                            compile=dict(compile_info or {}), isolation="remote")


def new_sentinel() -> str:
    return "ALETHEIA-DONE-" + secrets.token_hex(16)
