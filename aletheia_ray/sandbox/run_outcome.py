"""Outcome of a finished sandbox run: the test status given by its exit status, signals, memory
markers and measured CPU time. (Parsing the verifier model's answers is elsewhere, not here.)"""
from __future__ import annotations

from typing import Callable, Optional

from aletheia_ray.sandbox.languages import Language
from aletheia_ray.sandbox.process import RawRun
from aletheia_ray.sandbox.types import Status, Submission

STARTUP_S = {"python": 1.0, "cpp": 0.5, "java": 3.0}  # added to the wall limit per process
# ``time_limit_s`` is CPU time (user+sys, measured by cgroup cpuacct or the supervisor's wait4),
# plus this interpreter/JVM start-up allowance; the wall limit (2 x limit + STARTUP_S) catches
# programs that block or sleep.
CPU_STARTUP_S = {"python": 0.3, "cpp": 0.05, "java": 1.0}
SIGXCPU, SIGXFSZ = 24, 25
MEMORY_MARKERS = (b"MemoryError", b"std::bad_alloc", b"OutOfMemoryError", b"Cannot allocate memory")


def classify_run(raw: RawRun, oom: bool, bwrap: bool,
                 sandbox_healthy: Callable[[], bool]) -> tuple[Optional[Status], str]:
    """Status of a finished process (None = exited 0), with a detail such as 'signal 9'.
    ``bwrap``: the status may be relayed by bubblewrap's init (128 + signal); a bwrap error is
    InfraError only if ``sandbox_healthy()`` confirms the sandbox itself is broken."""
    err = raw.stderr.decode(errors="replace")
    tail = err.strip()[-300:]
    if raw.launch_error:
        return Status.INFRA, raw.launch_error
    if raw.stdout_overflow:
        return Status.OLE, "stdout over the output limit"
    if oom:
        return Status.MLE, "killed by the cgroup memory limit"
    if raw.timed_out:
        return Status.TLE, f"wall limit ({raw.wall_s:.2f}s)"
    rc = raw.returncode or 0
    relayed = bwrap and not raw.exact_status
    sig = -rc if rc < 0 else (rc - 128 if relayed and rc > 128 else 0)
    if rc == 0:
        return None, ""
    if relayed and rc == 1 and err.startswith("bwrap: ") and not sandbox_healthy():
        return Status.INFRA, f"sandbox failed: {tail}"
    if sig == SIGXCPU:
        return Status.TLE, "CPU time limit (SIGXCPU)"
    if sig == SIGXFSZ:
        return Status.OLE, "file size limit (SIGXFSZ)"
    if any(marker in raw.stderr for marker in MEMORY_MARKERS):
        return Status.MLE, tail
    return Status.RE, (f"signal {sig}" if sig else f"exit {rc}") + (f": {tail}" if tail else "")


def cpu_verdict(raw: RawRun, sub: Submission, lang: Language) -> tuple[Optional[Status], str]:
    """TLE for a run that exited normally but used more CPU than ``time_limit_s`` allows (the
    CPU rlimit, whole seconds, only kills far beyond it)."""
    allowed = sub.time_limit_s + CPU_STARTUP_S[lang.name]
    if raw.cpu_s is not None and raw.cpu_s > allowed:
        return Status.TLE, (f"CPU time {raw.cpu_s:.2f}s over the limit "
                            f"({sub.time_limit_s}s + {CPU_STARTUP_S[lang.name]}s start-up)")
    return None, ""
