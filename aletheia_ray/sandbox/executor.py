"""Executor: run one submission (compile once, each test in a fresh sandboxed process).

Call tests (entry_point + inputs) run in one sandboxed process per *chunk* of inputs: the driver
streams one result line per input and the host gives every input its own deadline
(``time_limit_s``); an input that stalls, crashes the process or exhausts memory is charged to that
input only and the remaining inputs restart in a fresh process. This keeps HumanEval+ (60 inputs
per task) at one process per candidate in the common case, like evalplus, while a hang or a crash
never leaks into the verdict of another input.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import tempfile
from typing import Any, Optional

from aletheia_ray.sandbox import isolation as iso
from aletheia_ray.sandbox.checkers import checker as get_checker
from aletheia_ray.sandbox.exec_wrapper import wrapped_argv, wrapper_path
from aletheia_ray.sandbox.isolation import IsolationReport, Limits
from aletheia_ray.sandbox.languages import Language, SourceError, language
from aletheia_ray.sandbox.process import RawRun, run_process
from aletheia_ray.sandbox.submissions import submission_from_row  # noqa: F401 - re-exported
from aletheia_ray.sandbox.types import Status, Submission, SubmissionResult, TestResult
from aletheia_ray.sandbox.values import DecodeError, decode, values_match

log = logging.getLogger(__name__)

COMPILE_TIME_S, COMPILE_MEMORY_MB = 30.0, 2048
STARTUP_S = {"python": 3.0, "cpp": 1.0, "java": 5.0}  # added to the wall limit per process
SIGXCPU, SIGXFSZ = 24, 25
MEMORY_MARKERS = (b"MemoryError", b"std::bad_alloc", b"OutOfMemoryError", b"Cannot allocate memory")
JAVA_CONF = ("/etc/java-17-openjdk",)


class Executor:
    """One sandbox slot. Not thread-safe: give each concurrent worker its own slot."""

    def __init__(self, isolation: str = "auto", allow_unisolated: bool = False, slot: int = 0,
                 work_root: Optional[str] = None):
        if isolation not in ("auto", "bwrap", "none"):
            raise ValueError(f"isolation: unknown {isolation!r} (auto | bwrap | none)")
        if not isinstance(slot, int) or not 0 <= slot < 4000:
            raise ValueError(f"slot: must be an int in [0, 4000), got {slot!r}")
        self.slot = slot
        self._closed = False
        self.uid = iso.SANDBOX_UID_BASE + slot if os.geteuid() == 0 else None
        self.root = tempfile.mkdtemp(prefix=f"aletheia-sbx-{os.getpid()}-s{slot}-", dir=work_root)
        os.chmod(self.root, 0o711)
        self.harness = os.path.join(self.root, "harness")
        shutil.copytree(iso.HARNESS_DIR, self.harness,
                        ignore=shutil.ignore_patterns("__pycache__"))
        for dirpath, _, files in os.walk(self.harness):
            os.chmod(dirpath, 0o755)
            for name in files:
                os.chmod(os.path.join(dirpath, name), 0o644)
        self.problems: dict[str, str] = {}
        self.seccomp_path: Optional[str] = os.path.join(self.root, "seccomp.bpf")
        try:
            iso.build_seccomp_bpf(self.seccomp_path)
        except Exception as exc:  # noqa: BLE001 - missing libseccomp is reported, not fatal
            self.problems["seccomp"] = f"cannot build filter: {exc}"
            self.seccomp_path = None
        self.cgroup = iso.SlotCgroup(slot) if os.geteuid() == 0 else None
        self.subreaper = iso.become_subreaper()
        self.exec_wrapper = wrapper_path()  # None (no C compiler): slower preexec_fn launches
        self._count = 0
        self._report: Optional[IsolationReport] = None
        self.mode = "bwrap"
        if isolation in ("auto", "bwrap"):
            why = self._bwrap_broken()
            if why and isolation == "bwrap":
                self.close()
                raise RuntimeError(f"isolation='bwrap' requested but bubblewrap fails: {why}")
            if why:
                self.problems["namespaces"] = why
                self.mode = "none"
        else:
            self.mode = "none"
        if self.mode == "none":
            if not allow_unisolated:
                self.close()
                raise RuntimeError("no namespace isolation available "
                                   f"({self.problems.get('namespaces', 'isolation=none')}); pass "
                                   "allow_unisolated=True to run untrusted code without it")
            log.warning("!!! SANDBOX RUNNING WITHOUT NAMESPACE ISOLATION (slot %d): untrusted "
                        "code can read host files and use the network !!!", slot)
        report = self.probe()  # at start: what this slot really achieved
        if report.level == "broken":
            self.close()
            raise RuntimeError(f"sandbox probe failed on slot {slot}: {report.layers}")
        log.info("sandbox slot %d isolation level: %s", slot, report.level)

    # ---- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        iso.sweep(self.uid, self.cgroup if self.cgroup and self.cgroup.dirs else None,
                  thorough=True)
        if self.subreaper:
            iso.release_subreaper(self.uid)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def probe(self) -> IsolationReport:
        """Run the probe program inside the sandbox and report what each layer achieved."""
        if self._report is None:
            from aletheia_ray.sandbox.probe import probe_executor

            self._report = probe_executor(self)
        return self._report

    @property
    def level(self) -> str:
        return self.probe().level

    # ---- launching ---------------------------------------------------------------------------
    def _bwrap_broken(self) -> str:
        if not os.path.exists("/usr/bin/bwrap"):
            return "/usr/bin/bwrap not installed (apt-get install bubblewrap)"
        prog = self._new_dir()
        raw, _ = self.launch(["/usr/bin/true"], prog, False, Limits(cpu_s=5, memory_mb=256),
                             b"", 10.0, 1 << 16, mode="bwrap")
        shutil.rmtree(prog, ignore_errors=True)
        if raw.launch_error or raw.returncode != 0:
            return (raw.launch_error or raw.stderr.decode(errors="replace").strip()
                    or f"exit {raw.returncode}")[:300]
        return ""

    def _new_dir(self) -> str:
        self._count += 1
        path = os.path.join(self.root, f"sub{self._count}")
        os.mkdir(path, 0o755)
        return path

    def paths(self, prog: str) -> tuple[str, str]:
        """(program dir, harness dir) as seen by the sandboxed process."""
        if self.mode == "bwrap":
            return iso.PROG_DIR, iso.HARNESS_MOUNT
        return prog, self.harness

    def launch(self, argv: list[str], prog: str, writable: bool, limits: Limits, stdin: bytes,
               wall_s: float, stdout_cap: int, mode: Optional[str] = None,
               progress_s: Optional[float] = None,
               first_progress_s: Optional[float] = None) -> tuple[RawRun, bool]:
        """Run argv in the slot's sandbox; returns (raw run, whether the cgroup OOM-killed)."""
        mode = mode or self.mode
        cg = self.cgroup if self.cgroup and self.cgroup.dirs else None
        if cg:
            if cg.pids():
                iso.sweep(self.uid, cg)
            cg.prepare(limits.memory_mb, limits.nproc)
            oom_before = cg.oom_kills()
        procs = cg.procs_paths() if cg else []
        fds: tuple[int, ...] = ()
        err_pipe: tuple[int, ...] = ()
        scratch = None
        try:
            if mode == "bwrap":
                if self.seccomp_path:
                    fds = (os.open(self.seccomp_path, os.O_RDONLY),)
                full = iso.bwrap_argv(prog, writable, limits, fds[0] if fds else None,
                                      self.harness, extra_ro=JAVA_CONF) + argv
                env, cwd = dict(iso.BWRAP_ENV), None
            else:
                scratch = prog if writable else tempfile.mkdtemp(dir=self.root)
                if self.uid is not None:
                    os.chown(scratch, self.uid, self.uid)
                full, cwd = argv, scratch
                env = {**iso.BWRAP_ENV, "HOME": scratch, "TMPDIR": scratch}
            preexec = None
            if self.exec_wrapper:  # vfork+exec a C wrapper: no Python in the child (fast path)
                err_pipe = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
                full = wrapped_argv(self.exec_wrapper, err_pipe[1], limits, self.uid, procs, full)
            else:
                preexec = iso.make_preexec(limits, self.uid, procs)
            raw = run_process(full, stdin=stdin, env=env, wall_s=wall_s, stdout_cap=stdout_cap,
                              cwd=cwd, preexec=preexec, pass_fds=fds + err_pipe[1:],
                              progress_s=progress_s, first_progress_s=first_progress_s,
                              kill_rest=lambda: iso.sweep(self.uid, cg))
            if err_pipe:
                try:
                    setup_error = os.read(err_pipe[0], 4096).decode(errors="replace")
                except BlockingIOError:
                    setup_error = ""
                if setup_error and not raw.launch_error:
                    raw.launch_error = setup_error
        finally:
            for fd in fds + err_pipe:
                os.close(fd)
            if scratch and not writable:
                shutil.rmtree(scratch, ignore_errors=True)
        oom = bool(cg) and cg.oom_kills() > oom_before
        if raw.timed_out or raw.stdout_overflow or oom or (raw.returncode or 0) < 0:
            iso.sweep(self.uid, cg, thorough=True)
        else:
            iso.reap_orphans(self.uid)
        return raw, oom

    def _sandbox_healthy(self) -> bool:
        prog = self._new_dir()
        raw, _ = self.launch(["/usr/bin/true"], prog, False, Limits(cpu_s=5, memory_mb=256),
                             b"", 10.0, 1 << 16)
        shutil.rmtree(prog, ignore_errors=True)
        return not raw.launch_error and raw.returncode == 0

    def classify(self, raw: RawRun, oom: bool) -> tuple[Optional[Status], str]:
        """Status of a finished process (None = exited 0), with a detail such as 'signal 9'."""
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
        sig = -rc if rc < 0 else (rc - 128 if self.mode == "bwrap" and rc > 128 else 0)
        if rc == 0:
            return None, ""
        if self.mode == "bwrap" and rc == 1 and err.startswith("bwrap: ") \
                and not self._sandbox_healthy():
            return Status.INFRA, f"sandbox failed: {tail}"
        if sig == SIGXCPU:
            return Status.TLE, "CPU time limit (SIGXCPU)"
        if sig == SIGXFSZ:
            return Status.OLE, "file size limit (SIGXFSZ)"
        if any(marker in raw.stderr for marker in MEMORY_MARKERS):
            return Status.MLE, tail
        return Status.RE, (f"signal {sig}" if sig else f"exit {rc}") + (f": {tail}" if tail else "")

    # ---- running a submission ----------------------------------------------------------------
    def run(self, sub: Submission) -> SubmissionResult:
        """Run one submission. Bad programs give CE/RE/...; sandbox failures give InfraError."""
        level = self.probe().level
        prog = self._new_dir()
        try:
            return self._run(sub, language(sub.language), prog, level)
        except Exception as exc:  # noqa: BLE001 - infrastructure, never the program's fault
            log.exception("sandbox infrastructure failure on %s", sub.id)
            return SubmissionResult(sub.id, Status.INFRA, None, isolation=level,
                                    detail=f"{type(exc).__name__}: {exc}"[:500])
        finally:
            shutil.rmtree(prog, ignore_errors=True)

    def _limits(self, sub: Submission, lang: Language, cpu_s: float) -> Limits:
        return Limits(cpu_s=cpu_s, memory_mb=sub.memory_limit_mb + lang.memory_overhead_mb,
                      address_space=lang.address_space_limit)

    def _run(self, sub: Submission, lang: Language, prog: str, level: str) -> SubmissionResult:
        result = SubmissionResult(sub.id, Status.OK, None, isolation=level)
        try:
            source = lang.source(sub.code, sub.test_program)
        except SourceError as exc:
            result.status, result.pass_rate, result.detail = Status.CE, 0.0, str(exc)
            return result
        with open(os.path.join(prog, lang.source_name), "w", encoding="utf-8") as fh:
            fh.write(source)
        if not self._compile(sub, lang, prog, result):
            return result
        if sub.tests is not None:
            result.tests = [self._stdio_test(sub, lang, prog, t.input, t.output) for t in sub.tests]
        elif sub.test_program is not None:
            result.tests = [self._program_test(sub, lang, prog)]
        elif sub.entry_point is not None:
            from aletheia_ray.sandbox.calls import run_call_tests

            result.tests = run_call_tests(self, sub, lang, prog)
        else:
            raise ValueError(f"submission {sub.id}: no tests, test_program or entry_point")
        return finish(result)

    def _compile(self, sub: Submission, lang: Language, prog: str,
                 result: SubmissionResult) -> bool:
        if self.uid is not None:
            os.chown(prog, self.uid, self.uid)
        prog_in, harness_in = self.paths(prog)
        argv = lang.compile_argv(prog_in, harness_in, sub.test_program is not None,
                                 COMPILE_MEMORY_MB)
        limits = Limits(cpu_s=COMPILE_TIME_S, memory_mb=COMPILE_MEMORY_MB + lang.memory_overhead_mb,
                        address_space=lang.address_space_limit, fsize_mb=256, nofile=1024)
        raw, oom = self.launch(argv, prog, True, limits, b"", COMPILE_TIME_S * 2, 1 << 20)
        if self.uid is not None:
            os.chown(prog, 0, 0)
        status, detail = self.classify(raw, oom)
        result.compile = {"status": "OK" if status is None else "CE",
                          "time_s": round(raw.wall_s, 4),
                          "stderr": raw.stderr.decode(errors="replace")[-2000:]}
        if status is None:
            return True
        if status == Status.INFRA:
            result.status, result.detail = Status.INFRA, detail
            result.compile["status"] = "InfraError"
        else:
            result.status, result.pass_rate = Status.CE, 0.0
            result.detail = f"compile {status.value}: {detail}"[:500]
        return False

    def _run_once(self, sub: Submission, lang: Language, prog: str, style: str, stdin: bytes,
                  cpu_s: float) -> tuple[RawRun, bool]:
        prog_in, harness_in = self.paths(prog)
        argv = lang.run_argv(prog_in, harness_in, style, sub.memory_limit_mb)
        wall = 2 * cpu_s + STARTUP_S[lang.name]
        return self.launch(argv, prog, False, self._limits(sub, lang, cpu_s + STARTUP_S[lang.name]),
                           stdin, wall, sub.output_limit_mb << 20)

    def _stdio_test(self, sub: Submission, lang: Language, prog: str, stdin: str,
                    expected: str) -> TestResult:
        raw, oom = self._run_once(sub, lang, prog, "stdio", stdin.encode(), sub.time_limit_s)
        status, detail = self.classify(raw, oom)
        if status is None:
            ok = get_checker(sub.checker)(raw.stdout.decode(errors="replace"), expected)
            status = Status.OK if ok else Status.WA
        return TestResult(status, round(raw.wall_s, 4), detail)

    def _program_test(self, sub: Submission, lang: Language, prog: str) -> TestResult:
        token = secrets.token_hex(16).encode()
        raw, oom = self._run_once(sub, lang, prog, "program", token + b"\n", sub.time_limit_s)
        status, detail = self.classify(raw, oom)
        if status is None:
            finished = raw.stdout.endswith(b"\n" + token + b"\n")
            status = Status.OK if finished else Status.WA
            detail = "" if finished else "exited 0 before the end of the test program"
        elif status == Status.RE and raw.returncode == 3 and lang.name == "python":
            detail = "SystemExit before the end of the test program: " + detail
            status = Status.WA
        return TestResult(status, round(raw.wall_s, 4), detail)


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


def decode_call_line(line: bytes) -> dict[str, Any]:
    record = json.loads(line)
    if not isinstance(record, dict) or not isinstance(record.get("i"), int):
        raise DecodeError(f"malformed result line {line[:80]!r}")
    if record.get("ok"):
        record["value"] = decode(record.get("value"))
    return record


__all__ = ["Executor", "submission_from_row", "finish", "values_match", "decode_call_line"]
