"""Call tests (HumanEval+ style): run the driver over the inputs, compare values on the host."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import TYPE_CHECKING, Any, Optional

from aletheia_ray.sandbox.languages import Language
from aletheia_ray.sandbox.types import Status, Submission, TestResult
from aletheia_ray.sandbox.values import DecodeError, decode, values_match

if TYPE_CHECKING:
    from aletheia_ray.sandbox.executor import Executor

DRIVER_STARTUP_S = 3.0  # interpreter start + module import, on top of the first input's limit
# Cost bound: after this many inputs of one submission hit their time limit, the inputs not yet
# run are reported TLE without running them (detail says so). Without it one exponential
# candidate costs len(inputs) x time_limit_s.
MAX_TIMEOUTS_PER_SUBMISSION = 3
EXPECTED_CACHE_SIZE = 256


def _parse(line: bytes, want: int) -> Optional[dict[str, Any]]:
    """A driver result line for relative index ``want``; None if malformed or out of order."""
    try:
        record = json.loads(line)
        if not isinstance(record, dict) or record.get("i") not in (want, -1):
            return None
        if record.get("ok"):
            record["value"] = decode(record.get("value"))
        elif not isinstance(record.get("error"), str):
            return None
        spent = record.get("time_s")
        record["time_s"] = round(float(spent), 4) if type(spent) in (int, float) else 0.0
        return record
    except (ValueError, DecodeError):
        return None


def call_outputs(ex: "Executor", sub: Submission, lang: Language, prog: str) -> list[dict]:
    """One record per input: {"ok", "value"|"error", "time_s"} or {"status", "detail"}."""
    inputs, n = sub.inputs or [], len(sub.inputs or [])
    out: list[Optional[dict]] = [None] * n
    prog_in, harness_in = ex.paths(prog)
    argv = lang.run_argv(prog_in, harness_in, "call", sub.memory_limit_mb)
    start = timeouts = 0
    while start < n:
        if timeouts >= MAX_TIMEOUTS_PER_SUBMISSION:
            for i in range(start, n):
                out[i] = {"status": Status.TLE, "detail": f"not run: {timeouts} inputs already "
                          f"exceeded {sub.time_limit_s}s"}
            break
        job = json.dumps({"entry_point": sub.entry_point, "inputs": inputs[start:]}).encode()
        budget = sub.time_limit_s * (n - start) + DRIVER_STARTUP_S
        raw, oom = ex.launch(argv, prog, False, ex.limits_for(sub, lang, budget), job, budget * 1.5,
                             sub.output_limit_mb << 20, progress_s=sub.time_limit_s,
                             first_progress_s=sub.time_limit_s + DRIVER_STARTUP_S)
        lines = raw.stdout.split(b"\n")[:-1]  # only complete lines
        nxt = start
        for line in lines:
            record = _parse(line, nxt - start)
            if record is None:
                break
            if record["i"] == -1:  # the module failed to load or lacks the entry point
                for i in range(nxt, n):
                    out[i] = {"status": Status.RE, "detail": record.get("error", "")}
                return out  # type: ignore[return-value]
            out[nxt] = record
            nxt += 1
            if nxt == n:
                break
        if nxt == n:
            break
        status, detail = ex.classify(raw, oom)
        if status is None:
            status, detail = Status.RE, "exited without a result for this input"
        elif status == Status.TLE and raw.stalled_at_line is not None:
            detail = f"no result within {sub.time_limit_s}s"
        out[nxt] = {"status": status, "detail": detail}
        timeouts += status == Status.TLE
        start = nxt + 1
    return out  # type: ignore[return-value]


def _expected_from_reference(ex: "Executor", sub: Submission, lang: Language) -> list[dict]:
    key = hashlib.sha256(json.dumps([sub.reference, sub.entry_point, sub.inputs,
                                     sub.memory_limit_mb]).encode()).hexdigest()
    cache = ex.__dict__.setdefault("_expected_cache", {})
    if key not in cache:
        ref_dir = ex.new_dir()
        try:
            with open(os.path.join(ref_dir, lang.source_name), "w", encoding="utf-8") as fh:
                fh.write(sub.reference or "")
            # the reference gets a generous per-input limit: its outputs define the test
            ref = Submission(**{**sub.__dict__, "code": sub.reference or "",
                                "time_limit_s": max(sub.time_limit_s, 10.0)})
            records = call_outputs(ex, ref, lang, ref_dir)
        finally:
            shutil.rmtree(ref_dir, ignore_errors=True)
        if any(r.get("status") == Status.INFRA for r in records):
            return records  # do not cache infrastructure failures
        if len(cache) >= EXPECTED_CACHE_SIZE:
            cache.pop(next(iter(cache)))
        cache[key] = records
    return cache[key]


def run_call_tests(ex: "Executor", sub: Submission, lang: Language, prog: str) -> list[TestResult]:
    loose = sub.expected is not None  # expected given as JSON: tuples compare as lists
    if loose:
        expected = [{"ok": True, "value": v} for v in sub.expected or []]
    else:
        expected = _expected_from_reference(ex, sub, lang)
    results = []
    for i, got in enumerate(call_outputs(ex, sub, lang, prog)):
        want = expected[i]
        if not want.get("ok"):
            # no trustworthy expected value: the verdict is unknown, not a failure of the program
            why = want.get("detail") or want.get("error")
            detail = f"reference failed on input {i}: {why}"[:500]
            results.append(TestResult(Status.INFRA, 0.0, detail))
        elif "status" in got:
            results.append(TestResult(got["status"], 0.0, got["detail"][:500]))
        elif not got["ok"]:
            status = Status.MLE if got["error"].startswith("MemoryError") else Status.RE
            results.append(TestResult(status, got["time_s"], got["error"]))
        else:
            ok = values_match(got["value"], want["value"], sub.atol, loose_sequences=loose)
            results.append(TestResult(Status.OK if ok else Status.WA, got["time_s"]))
    return results
