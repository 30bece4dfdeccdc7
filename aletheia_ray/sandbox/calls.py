"""Call tests (HumanEval+ style): run the driver over the inputs, compare values on the host.

Runs in a slot given as a ``SlotAccess`` (slot_access.py), never the executor itself; the
reference outputs are kept in an ``ExpectedCache`` that the caller (one per executor) owns."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Any, Optional

from aletheia_ray.sandbox.languages import Language
from aletheia_ray.sandbox.slot_access import SlotAccess, limits_for
from aletheia_ray.sandbox.types import Status, Submission, TestResult
from aletheia_ray.sandbox.values import DecodeError, decode, values_match

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


def call_outputs(slot: SlotAccess, sub: Submission, lang: Language, prog: str) -> list[dict]:
    """One record per input: {"ok", "value"|"error", "time_s"} or {"status", "detail"}."""
    inputs, n = sub.inputs or [], len(sub.inputs or [])
    out: list[Optional[dict]] = [None] * n
    prog_in, harness_in = slot.paths(prog)
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
        raw, oom = slot.launch(argv, prog, False, limits_for(sub, lang, budget), job, budget * 1.5,
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
        status, detail = slot.classify(raw, oom)
        if status is None:
            status, detail = Status.RE, "exited without a result for this input"
        elif status == Status.TLE and raw.stalled_at_line is not None:
            detail = f"no result within {sub.time_limit_s}s"
        out[nxt] = {"status": status, "detail": detail}
        timeouts += status == Status.TLE
        start = nxt + 1
    return out  # type: ignore[return-value]


class ExpectedCache:
    """Reference outputs (``call_outputs`` records) by reference + entry point + inputs + memory
    limit; at most ``max_entries``, the oldest evicted first. One per executor (slot)."""

    def __init__(self, max_entries: int = EXPECTED_CACHE_SIZE):
        self.max_entries = max_entries
        self._records: dict[str, list[dict]] = {}

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: str) -> Optional[list[dict]]:
        return self._records.get(key)

    def put(self, key: str, records: list[dict]) -> None:
        if key not in self._records and len(self._records) >= self.max_entries:
            self._records.pop(next(iter(self._records)))
        self._records[key] = records


def _expected_from_reference(slot: SlotAccess, sub: Submission, lang: Language,
                             cache: ExpectedCache) -> list[dict]:
    key = hashlib.sha256(json.dumps([sub.reference, sub.entry_point, sub.inputs,
                                     sub.memory_limit_mb]).encode()).hexdigest()
    records = cache.get(key)
    if records is None:
        ref_dir = slot.new_dir()
        try:
            with open(os.path.join(ref_dir, lang.source_name), "w", encoding="utf-8") as fh:
                fh.write(sub.reference or "")
            # the reference gets a generous per-input limit: its outputs define the test
            ref = Submission(**{**sub.__dict__, "code": sub.reference or "",
                                "time_limit_s": max(sub.time_limit_s, 10.0)})
            records = call_outputs(slot, ref, lang, ref_dir)
        finally:
            shutil.rmtree(ref_dir, ignore_errors=True)
        if any(r.get("status") == Status.INFRA for r in records):
            return records  # do not cache infrastructure failures
        cache.put(key, records)
    return records


def run_call_tests(slot: SlotAccess, sub: Submission, lang: Language, prog: str,
                   expected_cache: ExpectedCache) -> list[TestResult]:
    """One result per input of ``sub``; expected values from ``sub.expected`` or, run once per
    ``expected_cache``, from ``sub.reference``."""
    loose = sub.expected is not None  # expected given as JSON: tuples compare as lists
    if loose:
        expected = [{"ok": True, "value": v} for v in sub.expected or []]
    else:
        expected = _expected_from_reference(slot, sub, lang, expected_cache)
    results = []
    for i, got in enumerate(call_outputs(slot, sub, lang, prog)):
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
