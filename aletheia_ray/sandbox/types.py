"""Data contracts of the sandbox: what is submitted, what comes back.

The executor (``aletheia_ray.sandbox.executor``), the SandboxFusion client
(``aletheia_ray.sandbox.remote``) and the Ray pool (``actors/sandbox.py``) all speak these types.
"""
from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any, Optional


SANDBOX_BACKENDS = ("local", "sandboxfusion")  # local: this project's isolated executor; a SandboxFusion server


class Status(str, enum.Enum):
    OK = "OK"  # test passed
    WA = "WA"  # wrong answer (or a test program that exited non-zero / without its sentinel)
    RE = "RE"  # runtime error (detail carries signal / exit code)
    TLE = "TLE"  # wall or CPU time limit
    MLE = "MLE"  # memory limit
    OLE = "OLE"  # output limit
    CE = "CE"  # compile error (whole submission)
    INFRA = "InfraError"  # the sandbox itself failed: never a wrong answer, never a reward of 0


@dataclass
class StdioTest:
    input: str
    output: str


@dataclass
class Submission:
    """One program plus exactly one test style: ``tests`` | ``test_program`` | ``entry_point``."""

    id: str
    language: str  # "python" | "cpp" | "java"
    code: str
    tests: Optional[list[StdioTest]] = None
    checker: str = "tokens"  # exact | tokens | float | sandboxfusion
    test_program: Optional[str] = None
    entry_point: Optional[str] = None
    inputs: Optional[list[list[Any]]] = None
    expected: Optional[list[Any]] = None
    reference: Optional[str] = None  # reference solution code used to compute expected outputs
    atol: float = 0.0
    time_limit_s: float = 10.0
    memory_limit_mb: int = 1024
    output_limit_mb: int = 64  # stdout cap per test process; beyond it the test is OLE


@dataclass
class TestResult:
    status: Status
    time_s: float = 0.0
    detail: str = ""  # e.g. "signal 9", "exit 1", first lines of stderr


@dataclass
class SubmissionResult:
    id: str
    status: Status  # OK if every test passed, CE, INFRA, else the first failing test's status
    pass_rate: Optional[float]  # None when status is INFRA: unknown, not 0
    tests: list[TestResult] = field(default_factory=list)
    compile: dict[str, Any] = field(default_factory=dict)  # {"status", "time_s", "stderr"}
    isolation: str = ""  # level the executor achieved (see executor.probe())
    detail: str = ""  # why, for CE / InfraError (e.g. "bwrap failed: ...")

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["status"] = self.status.value
        row["tests"] = [{**asdict(t), "status": t.status.value} for t in self.tests]
        return row


def finish(result: SubmissionResult) -> SubmissionResult:
    """Aggregate per-test statuses: INFRA anywhere makes the pass rate unknown (None)."""
    statuses = [t.status for t in result.tests]
    if not statuses:
        result.status, result.pass_rate = Status.INFRA, None
        result.detail = result.detail or "no test results"
    elif Status.INFRA in statuses:
        result.status, result.pass_rate = Status.INFRA, None
        result.detail = next(t.detail for t in result.tests if t.status == Status.INFRA)
    else:
        passed = sum(s == Status.OK for s in statuses)
        result.pass_rate = passed / len(statuses)
        result.status = next((s for s in statuses if s != Status.OK), Status.OK)
    return result
