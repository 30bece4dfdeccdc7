"""Executor: run one submission (compile once, each test in a fresh sandboxed process).

Call tests (entry_point + inputs) run in one sandboxed process per *chunk* of inputs: the driver
streams one result line per input and the host gives every input its own deadline
(``time_limit_s``); an input that stalls, crashes the process or exhausts memory is charged to that
input only and the remaining inputs restart in a fresh process. This keeps HumanEval+ (60 inputs
per task) at one process per candidate in the common case, like evalplus, while a hang or a crash
never leaks into the verdict of another input.
"""
from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import tempfile
from typing import Any, Iterator, Optional

from aletheia_ray.sandbox import isolation as iso
from aletheia_ray.sandbox.calls import ExpectedCache, run_call_tests
from aletheia_ray.sandbox.checkers import checker as get_checker
from aletheia_ray.sandbox.exec_wrapper import wrapped_argv, wrapper_path
from aletheia_ray.sandbox.native import compiled_tool
from aletheia_ray.sandbox.isolation import IsolationReport, Limits
from aletheia_ray.sandbox.languages import Language, SourceError, language
from aletheia_ray.sandbox.probe import run_probe
from aletheia_ray.sandbox.process import RawRun, run_process
from aletheia_ray.sandbox.run_outcome import STARTUP_S, classify_run, cpu_verdict
from aletheia_ray.sandbox.session import SUPERVISOR_NAME, TestSession
from aletheia_ray.sandbox.slot_access import Launch, SlotAccess, limits_for
from aletheia_ray.sandbox.slot_lock import claim_slot, release_slot
from aletheia_ray.sandbox.submissions import submission_from_row  # noqa: F401 - re-exported
from aletheia_ray.sandbox.types import Status, Submission, SubmissionResult, TestResult, finish
from aletheia_ray.sandbox.values import decode_call_line, values_match  # noqa: F401 - re-exported

log = logging.getLogger(__name__)

COMPILE_TIME_S, COMPILE_MEMORY_MB = 30.0, 2048
# read-only host config the sandbox needs: the JVM's, and Debian's alternatives symlinks (numpy's
# libblas.so.3 resolves through /etc/alternatives); symlinks and config only, no secrets
SYSTEM_CONF_RO = ("/etc/java-17-openjdk", "/etc/alternatives")


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
        # as root a slot is a uid + cgroup that every run sweeps: hold it host-wide (slot_lock.py)
        self._slot_fd = claim_slot(slot) if self.uid is not None else None
        self.root, self.subreaper, self.cgroup = None, False, None
        try:
            self._start(isolation, allow_unisolated, slot, work_root)
        except BaseException:
            self.close()
            raise

    def _start(self, isolation: str, allow_unisolated: bool, slot: int,
               work_root: Optional[str]) -> None:
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
        # one sandbox per submission's stdio tests (session.py); None: one sandbox per test
        self.supervisor = compiled_tool("supervisor.c", SUPERVISOR_NAME)
        if self.supervisor:
            shutil.copy(self.supervisor, os.path.join(self.harness, SUPERVISOR_NAME))
            os.chmod(os.path.join(self.harness, SUPERVISOR_NAME), 0o755)
        self._count = 0
        self._report: Optional[IsolationReport] = None
        # reference outputs of call tests (calls.py), reused across this slot's submissions
        self.expected_cache = ExpectedCache()
        self.mode = "bwrap"
        if isolation in ("auto", "bwrap"):
            why = self._bwrap_broken()
            if why and isolation == "bwrap":
                raise RuntimeError(f"isolation='bwrap' requested but bubblewrap fails: {why}")
            if why:
                self.problems["namespaces"] = why
                self.mode = "none"
        else:
            self.mode = "none"
        if self.mode == "none":
            if not allow_unisolated:
                raise RuntimeError("no namespace isolation available "
                                   f"({self.problems.get('namespaces', 'isolation=none')}); pass "
                                   "allow_unisolated=True to run untrusted code without it")
            log.warning("!!! SANDBOX RUNNING WITHOUT NAMESPACE ISOLATION (slot %d): untrusted "
                        "code can read host files and use the network !!!", slot)
        report = self.probe()  # at start: what this slot really achieved
        if report.level == "broken":
            raise RuntimeError(f"sandbox probe failed on slot {slot}: {report.layers}")
        log.info("sandbox slot %d isolation level: %s", slot, report.level)

    # ---- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        iso.sweep(self.uid, self.cgroup if self.cgroup and self.cgroup.dirs else None,
                  thorough=True)  # also reaps the slot's adopted zombies
        if self.subreaper:
            iso.release_subreaper()
        if self.root:
            shutil.rmtree(self.root, ignore_errors=True)
        if self._slot_fd is not None:
            release_slot(self._slot_fd)  # last: the slot is empty now
            self._slot_fd = None

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def probe(self) -> IsolationReport:
        """Run the probe program inside the sandbox and report what each layer achieved."""
        if self._report is None:
            self._report = run_probe(self.slot_access(), self.problems, self.cgroup,
                                     self.subreaper)
        return self._report

    @property
    def level(self) -> str:
        return self.probe().level

    def slot_access(self) -> SlotAccess:
        """This slot as the helper modules (probe, session, calls) see it: settings + callables."""
        return SlotAccess(mode=self.mode, uid=self.uid, new_dir=self.new_dir, paths=self.paths,
                          launch=self.launch, sandboxed=self.sandboxed, classify=self.classify)

    # ---- launching ---------------------------------------------------------------------------
    def _bwrap_broken(self) -> str:
        if not os.path.exists("/usr/bin/bwrap"):
            return "/usr/bin/bwrap not installed (apt-get install bubblewrap)"
        prog = self.new_dir()
        raw, _ = self.launch(["/usr/bin/true"], prog, False, Limits(cpu_s=5, memory_mb=256),
                             b"", 10.0, 1 << 16, mode="bwrap")
        shutil.rmtree(prog, ignore_errors=True)
        if raw.launch_error or raw.returncode != 0:
            return (raw.launch_error or raw.stderr.decode(errors="replace").strip()
                    or f"exit {raw.returncode}")[:300]
        return ""

    def new_dir(self) -> str:
        self._count += 1
        path = os.path.join(self.root, f"sub{self._count}")
        os.mkdir(path, 0o755)
        return path

    def paths(self, prog: str) -> tuple[str, str]:
        """(program dir, harness dir) as seen by the sandboxed process."""
        if self.mode == "bwrap":
            return iso.PROG_DIR, iso.HARNESS_MOUNT
        return prog, self.harness

    @contextlib.contextmanager
    def sandboxed(self, argv: list[str], prog: str, writable: bool, limits: Limits,
                  mode: Optional[str] = None, extra_fds: tuple[int, ...] = ()) -> Iterator[Launch]:
        """The full command line (wrapper + bwrap + argv) and process settings of one sandboxed
        launch in this slot; the slot's cgroup is emptied and set to ``limits`` first."""
        mode = mode or self.mode
        cg = self.cgroup if self.cgroup and self.cgroup.dirs else None
        if cg:
            if cg.pids():
                iso.sweep(self.uid, cg)
            cg.prepare(limits.memory_mb, limits.nproc)
        procs = cg.procs_paths() if cg else []
        fds: tuple[int, ...] = ()
        err_pipe: tuple[int, ...] = ()
        scratch = None
        try:
            if mode == "bwrap":
                if self.seccomp_path:
                    fds = (os.open(self.seccomp_path, os.O_RDONLY),)
                full = iso.bwrap_argv(prog, writable, limits, fds[0] if fds else None,
                                      self.harness, extra_ro=SYSTEM_CONF_RO) + argv
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
            yield Launch(full, env, cwd, preexec, fds + err_pipe[1:] + extra_fds,
                         err_pipe[0] if err_pipe else None, cg)
        finally:
            for fd in fds + err_pipe:
                os.close(fd)
            if scratch and not writable:
                shutil.rmtree(scratch, ignore_errors=True)

    def launch(self, argv: list[str], prog: str, writable: bool, limits: Limits, stdin: bytes,
               wall_s: float, stdout_cap: int, mode: Optional[str] = None,
               progress_s: Optional[float] = None,
               first_progress_s: Optional[float] = None) -> tuple[RawRun, bool]:
        """Run argv in the slot's sandbox; returns (raw run, whether the cgroup OOM-killed)."""
        with self.sandboxed(argv, prog, writable, limits, mode) as cmd:
            oom_before = cmd.cgroup.oom_kills() if cmd.cgroup else 0
            raw = run_process(cmd.argv, stdin=stdin, env=cmd.env, wall_s=wall_s,
                              stdout_cap=stdout_cap, cwd=cmd.cwd, preexec=cmd.preexec,
                              pass_fds=cmd.pass_fds, progress_s=progress_s,
                              first_progress_s=first_progress_s,
                              kill_rest=lambda: iso.sweep(self.uid, cmd.cgroup))
            setup_error = cmd.setup_error()
            if setup_error and not raw.launch_error:
                raw.launch_error = setup_error
            if cmd.cgroup:
                raw.cpu_s = cmd.cgroup.cpu_s()
        oom = bool(cmd.cgroup) and cmd.cgroup.oom_kills() > oom_before
        if raw.timed_out or raw.stdout_overflow or oom or (raw.returncode or 0) < 0:
            iso.sweep(self.uid, cmd.cgroup, thorough=True)
        else:
            iso.reap_orphans(self.uid)
        return raw, oom

    def _sandbox_healthy(self) -> bool:
        prog = self.new_dir()
        raw, _ = self.launch(["/usr/bin/true"], prog, False, Limits(cpu_s=5, memory_mb=256),
                             b"", 10.0, 1 << 16)
        shutil.rmtree(prog, ignore_errors=True)
        return not raw.launch_error and raw.returncode == 0

    def classify(self, raw: RawRun, oom: bool) -> tuple[Optional[Status], str]:
        """Status of a finished process (None = exited 0), with a detail such as 'signal 9'."""
        return classify_run(raw, oom, self.mode == "bwrap", self._sandbox_healthy)

    # ---- running a submission ----------------------------------------------------------------
    def run(self, sub: Submission) -> SubmissionResult:
        """Run one submission. Bad programs give CE/RE/...; sandbox failures give InfraError."""
        level = self.probe().level
        prog = self.new_dir()
        try:
            return self._run(sub, language(sub.language), prog, level)
        except Exception as exc:  # noqa: BLE001 - infrastructure, never the program's fault
            log.exception("sandbox infrastructure failure on %s", sub.id)
            return SubmissionResult(sub.id, Status.INFRA, None, isolation=level,
                                    detail=f"{type(exc).__name__}: {exc}"[:500])
        finally:
            shutil.rmtree(prog, ignore_errors=True)

    def limits_for(self, sub: Submission, lang: Language, cpu_s: float) -> Limits:
        return limits_for(sub, lang, cpu_s)

    def _run(self, sub: Submission, lang: Language, prog: str, level: str) -> SubmissionResult:
        result = SubmissionResult(sub.id, Status.OK, None, isolation=level)
        try:
            source = lang.source(sub.code, sub.test_program)
        except SourceError as exc:
            result.status, result.pass_rate, result.detail = Status.CE, 0.0, str(exc)
            return result
        with open(os.path.join(prog, lang.source_name), "w", encoding="utf-8") as fh:
            fh.write(source)
        if sub.tests is not None:
            with self.stdio_session(sub, lang, prog) as session:
                # a syntax check writes nothing: it runs in the tests' sandbox (read-only prog)
                if not self.compile(sub, lang, prog, result, None if lang.compiled else session):
                    return result
                result.tests = self._stdio_tests(sub, lang, prog, session)
            return finish(result)
        if not self.compile(sub, lang, prog, result):
            return result
        if sub.test_program is not None:
            result.tests = [self._program_test(sub, lang, prog)]
        elif sub.entry_point is not None:
            result.tests = run_call_tests(self.slot_access(), sub, lang, prog, self.expected_cache)
        else:
            raise ValueError(f"submission {sub.id}: no tests, test_program or entry_point")
        return finish(result)

    def compile(self, sub: Submission, lang: Language, prog: str, result: SubmissionResult,
                session: Optional[TestSession] = None) -> bool:
        """Compile (C++/Java) or syntax-check (Python) once; False with ``result`` set if not OK.
        With a ``session`` the command runs there (read-only program dir, the tests' limits)."""
        prog_in, harness_in = self.paths(prog)
        argv = lang.compile_argv(prog_in, harness_in, sub.test_program is not None,
                                 COMPILE_MEMORY_MB)
        if session is not None:
            raw, oom = session.run(argv, b"", COMPILE_TIME_S, 1 << 20)
        else:
            if self.uid is not None:
                os.chown(prog, self.uid, self.uid)
            limits = Limits(cpu_s=COMPILE_TIME_S,
                            memory_mb=COMPILE_MEMORY_MB + lang.memory_overhead_mb,
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
                  cpu_s: float, session: Optional[TestSession] = None) -> tuple[RawRun, bool]:
        prog_in, harness_in = self.paths(prog)
        argv = lang.run_argv(prog_in, harness_in, style, sub.memory_limit_mb)
        wall = 2 * cpu_s + STARTUP_S[lang.name]
        if session is not None:
            return session.run(argv, stdin, wall, sub.output_limit_mb << 20)
        return self.launch(argv, prog, False, self.run_limits(sub, lang), stdin, wall,
                           sub.output_limit_mb << 20)

    def run_limits(self, sub: Submission, lang: Language) -> Limits:
        return self.limits_for(sub, lang, sub.time_limit_s + STARTUP_S[lang.name])

    def stdio_session(self, sub: Submission, lang: Language,
                      prog: str) -> contextlib.AbstractContextManager[Optional[TestSession]]:
        """One sandbox for all stdio tests of ``sub`` (session.py), or None without the supervisor
        (then every test gets a sandbox of its own)."""
        if not self.supervisor:
            return contextlib.nullcontext()
        return TestSession(self.slot_access(), prog, self.run_limits(sub, lang))

    def run_stdio_tests(self, sub: Submission, lang: Language, prog: str) -> list[TestResult]:
        """Every stdin/stdout test of a compiled program, each in a fresh process."""
        with self.stdio_session(sub, lang, prog) as session:
            return self._stdio_tests(sub, lang, prog, session)

    def _stdio_tests(self, sub: Submission, lang: Language, prog: str,
                     session: Optional[TestSession]) -> list[TestResult]:
        return [self._stdio_test(sub, lang, prog, t.input, t.output, session)
                for t in sub.tests or []]

    def _stdio_test(self, sub: Submission, lang: Language, prog: str, stdin: str,
                    expected: str, session: Optional[TestSession] = None) -> TestResult:
        raw, oom = self._run_once(sub, lang, prog, "stdio", stdin.encode(), sub.time_limit_s,
                                  session)
        status, detail = self.classify(raw, oom)
        if status is None:
            status, detail = cpu_verdict(raw, sub, lang)
        if status is None:
            ok = get_checker(sub.checker)(raw.stdout.decode(errors="replace"), expected)
            status = Status.OK if ok else Status.WA
        return TestResult(status, round(raw.wall_s, 4), detail)

    def _program_test(self, sub: Submission, lang: Language, prog: str) -> TestResult:
        token = secrets.token_hex(16).encode()
        raw, oom = self._run_once(sub, lang, prog, "program", token + b"\n", sub.time_limit_s)
        status, detail = self.classify(raw, oom)
        if status is None:
            status, detail = cpu_verdict(raw, sub, lang)
        if status is None:
            finished = raw.stdout.endswith(b"\n" + token + b"\n")
            status = Status.OK if finished else Status.WA
            detail = "" if finished else "exited 0 before the end of the test program"
        elif status == Status.RE and raw.returncode == 3 and lang.name == "python":
            detail = "SystemExit before the end of the test program: " + detail
            status = Status.WA
        return TestResult(status, round(raw.wall_s, 4), detail)


__all__ = ["Executor", "Launch", "submission_from_row", "finish", "values_match",
           "decode_call_line"]
