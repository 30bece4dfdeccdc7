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

Test styles reuse the local executor's drivers, sent as one source file (the program itself is
embedded in a prelude that writes it to a temp file and points the driver at it):
* test program: a random token goes on stdin and must be the last stdout line (Python: the
  ``py_program.py`` driver; C++: the end-of-main guard of ``languages.py``), so ``SystemExit(0)`` /
  ``exit(0)`` before the asserts fails. Java: SandboxFusion runs one file with one public class, so
  the launcher cannot be added: only the exit code is checked remotely (use the local executor);
* call tests (Python): the ``py_call.py`` driver, one request per input; values are decoded and
  compared here (``values.values_match``); expected values from ``reference`` are computed remotely
  once per (reference, input) and cached.
Isolation is whatever the deployment provides (SandboxFusion without its Docker image has none).
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

import requests

from aletheia_ray.sandbox.checkers import checker as get_checker
from aletheia_ray.sandbox.executor import decode_call_line, finish
from aletheia_ray.sandbox.isolation import HARNESS_DIR, IsolationReport
from aletheia_ray.sandbox.languages import language as local_language
from aletheia_ray.sandbox.types import Status, Submission, SubmissionResult, TestResult
from aletheia_ray.sandbox.values import DecodeError, values_match

log = logging.getLogger(__name__)

SF_LANGUAGE = {"python": "python", "cpp": "cpp", "java": "java"}
COMPILED = {"cpp", "java"}
_MLE_MARKERS = ("MemoryError", "std::bad_alloc", "java.lang.OutOfMemoryError")
Judge = Callable[[str], TestResult]  # stdout of a clean exit -> verdict of one test
_SYNTAX_ERROR = re.compile(r"(^|: )(SyntaxError|IndentationError|TabError)\b")
RemoteTest = tuple[str, str, Judge]  # (code, stdin, judge): one /run_code request


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
        self._ref_cache: dict[str, Any] = {}  # sha256(reference, entry_point, args) -> value
        self._lock = threading.Lock()

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
        result = SubmissionResult(sub.id, Status.OK, None, isolation="remote")
        try:
            lang = SF_LANGUAGE[local_language(sub.language).name]
            tests = self._plan(sub)
        except (ValueError, RemoteInfraError) as err:  # unknown language / reference unrunnable
            result.status, result.detail = Status.INFRA, f"{type(err).__name__}: {err}"[:500]
            return result
        verdicts: list[TestResult] = []
        if lang in COMPILED:  # the first test alone: a compile error ends the submission
            verdicts.append(self._run_test(sub, lang, tests[0], result.compile))
            tests = tests[1:] if verdicts[0].status != Status.CE else []
        futures = [self._pool.submit(self._run_test, sub, lang, t, result.compile) for t in tests]
        verdicts += [fut.result() for fut in futures]
        if any(v.status == Status.CE for v in verdicts):
            result.status, result.pass_rate = Status.CE, 0.0
            result.detail = "compile error: " + str(result.compile.get("stderr", ""))[-400:]
            return result
        if lang == "python" and verdicts and all(_is_syntax_error(v) for v in verdicts):
            # SandboxFusion has no compile step for Python; the local executor reports CE here
            result.status, result.pass_rate, result.detail = Status.CE, 0.0, verdicts[0].detail
            result.compile = {"status": "CE", "time_s": 0.0, "stderr": verdicts[0].detail}
            return result
        result.tests = verdicts
        return finish(result)

    def _run_test(self, sub: Submission, lang: str, test: RemoteTest,
                  compile_info: dict) -> TestResult:
        code, stdin, judge = test
        try:
            body = self.run_code(code, lang, stdin, sub.time_limit_s, sub.memory_limit_mb)
        except RemoteInfraError as err:
            return TestResult(Status.INFRA, detail=str(err))
        return verdict_from_response(body, judge, compile_info,
                                     systemexit_is_wa=lang == "python" and sub.test_program is not None)

    def _plan(self, sub: Submission) -> list[RemoteTest]:
        """One (code, stdin, judge) per test, in the submission's test style."""
        if sub.tests is not None:
            if not sub.tests:
                raise ValueError(f"submission {sub.id}: 'tests' is empty")
            check = get_checker(sub.checker)
            return [(sub.code, t.input, _stdio_judge(check, t.output)) for t in sub.tests]
        if sub.test_program is not None:
            lang = local_language(sub.language)
            token = secrets.token_hex(16)
            if lang.name == "python":
                code = _with_driver(lang.source(sub.code, sub.test_program), "py_program.py")
            elif lang.name == "java":
                code = sub.code + "\n" + _java_with_launcher(sub.test_program)
            else:
                code = lang.source(sub.code, sub.test_program)
            return [(code, token + "\n", _token_judge(token))]
        if sub.entry_point is not None:
            if local_language(sub.language).name != "python":
                raise ValueError(f"submission {sub.id}: call tests need language python")
            inputs = sub.inputs or []
            if not inputs:
                raise ValueError(f"submission {sub.id}: 'inputs' is empty")
            if sub.expected is not None:
                want, loose = list(sub.expected), True
            else:
                want, loose = self._reference_values(sub), False
            code = _with_driver(sub.code, "py_call.py")
            return [(code, _call_job(sub.entry_point, args), _call_judge(want[i], sub.atol, loose))
                    for i, args in enumerate(inputs)]
        raise ValueError(f"submission {sub.id}: no tests, test_program or entry_point")

    def _reference_values(self, sub: Submission) -> list[Any]:
        """Expected values from running ``reference`` remotely (cached per reference + input)."""
        code = _with_driver(sub.reference or "", "py_call.py")
        keys = [hashlib.sha256(json.dumps([sub.reference, sub.entry_point, args]).encode())
                .hexdigest() for args in sub.inputs or []]
        missing = [(k, args) for k, args in zip(keys, sub.inputs or []) if k not in self._ref_cache]
        limit = max(sub.time_limit_s, 10.0)

        def run_reference(args: list) -> Any:
            body = self.run_code(code, "python", _call_job(sub.entry_point, args), limit,
                                 sub.memory_limit_mb)
            record = _first_call_record(str((body.get("run_result") or {}).get("stdout") or ""))
            if body.get("status") == "SandboxError" or record is None or not record.get("ok"):
                why = record.get("error") if record else str(body.get("message") or body)[:200]
                raise RemoteInfraError(f"reference solution failed on input {args!r:.80}: {why}")
            return record["value"]

        values = list(self._pool.map(run_reference, [args for _, args in missing]))
        with self._lock:
            for (key, _), value in zip(missing, values):
                self._ref_cache[key] = value
        return [self._ref_cache[k] for k in keys]

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
                log.warning("SandboxFusion %s: retry %d/%d after %s", self.url, attempt,
                            self.retries, error)
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


def verdict_from_response(body: dict, judge: Judge, compile_info: dict,
                          systemexit_is_wa: bool = False) -> TestResult:
    """Map one ``/run_code`` answer to a test verdict (CE is reported as a test with status CE).

    ``systemexit_is_wa``: exit code 3 is the Python drivers' "SystemExit before the end" signal.
    """
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
    if systemexit_is_wa and code == 3:
        return TestResult(Status.WA, time_s, "SystemExit before the end of the test program")
    if run.get("status") != "Finished" or code != 0:
        if any(marker in stderr for marker in _MLE_MARKERS):
            return TestResult(Status.MLE, time_s, stderr.strip().splitlines()[-1][:200])
        detail = f"signal {-code}" if isinstance(code, int) and code < 0 else f"exit {code}"
        tail = stderr.strip().splitlines()[-1][:200] if stderr.strip() else ""
        return TestResult(Status.RE, time_s, f"{detail}: {tail}" if tail else detail)
    verdict = judge(str(run.get("stdout") or ""))
    verdict.time_s = time_s
    return verdict


def _is_syntax_error(verdict: TestResult) -> bool:
    return verdict.status == Status.RE and bool(_SYNTAX_ERROR.search(verdict.detail))


def _stdio_judge(check: Callable[[str, str], bool], expected: str) -> Judge:
    return lambda out: TestResult(Status.OK if check(out, expected) else Status.WA)


def _token_judge(token: str) -> Judge:
    def judge(out: str) -> TestResult:
        if out.endswith("\n" + token + "\n"):
            return TestResult(Status.OK)
        return TestResult(Status.WA, detail="exited 0 before the end of the test program")
    return judge


JAVA_TEST_MAIN = "AletheiaTestMain"
JAVA_INLINE_LAUNCHER = """
public class Main {
  public static void main(String[] args) throws Exception {
    String token = new java.io.BufferedReader(new java.io.InputStreamReader(System.in)).readLine();
    System.setIn(new java.io.ByteArrayInputStream(new byte[0]));
    %s.main(args);
    System.out.flush();
    System.out.print("\\n" + token + "\\n");
    System.out.flush();
    System.exit(0);
  }
}
""" % JAVA_TEST_MAIN


def _java_with_launcher(test_program: str) -> str:
    """SandboxFusion runs one file's ``Main``: rename the test program's ``Main`` class and add a
    ``Main`` that reads the token, calls it and prints the token only if it returned (the local
    executor uses harness/AletheiaLauncher.java for the same)."""
    renamed = re.sub(r"\bMain\b", JAVA_TEST_MAIN, test_program)
    renamed = re.sub(r"\bpublic(\s+(?:final\s+)?class\s+%s\b)" % JAVA_TEST_MAIN, r"\1", renamed)
    return renamed + JAVA_INLINE_LAUNCHER


def _call_judge(expected: Any, atol: float, loose: bool) -> Judge:
    def judge(out: str) -> TestResult:
        record = _first_call_record(out)
        if record is None:
            return TestResult(Status.RE, detail="exited without a result for this input")
        if not record.get("ok"):
            error = str(record.get("error", ""))
            status = Status.MLE if error.startswith("MemoryError") else Status.RE
            return TestResult(status, detail=error[:500])
        ok = values_match(record["value"], expected, atol, loose_sequences=loose)
        return TestResult(Status.OK if ok else Status.WA)
    return judge


def _first_call_record(stdout: str) -> Optional[dict]:
    """The py_call driver's record for input 0 (or -1: module failed to load); None if absent."""
    line = stdout.split("\n", 1)[0]
    try:
        record = decode_call_line(line.encode())
    except (ValueError, DecodeError):
        return None
    return record if record["i"] in (0, -1) else None


def _call_job(entry_point: str, args: list) -> str:
    return json.dumps({"entry_point": entry_point, "inputs": [args]})


@functools.lru_cache(maxsize=None)
def _driver_text(driver: str) -> str:
    with open(os.path.join(HARNESS_DIR, driver), encoding="utf-8") as fh:
        return fh.read()


def _with_driver(source: str, driver: str) -> str:
    """One Python file: write ``source`` to a temp file, then run the local ``driver`` on it."""
    driver_text = _driver_text(driver)
    prelude = ("import os as _aletheia_os, sys as _aletheia_sys, tempfile as _aletheia_tmp\n"
               "_aletheia_fd, _aletheia_path = _aletheia_tmp.mkstemp(suffix='.py')\n"
               f"_aletheia_os.write(_aletheia_fd, {source.encode()!r})\n"
               "_aletheia_os.close(_aletheia_fd)\n"
               "_aletheia_sys.argv[1:] = [_aletheia_path]\n")
    return prelude + driver_text
