"""One sandbox for all stdio tests of a submission; a supervisor inside forks a process per test.

Starting bubblewrap costs ~6 ms whatever the program does, so one sandbox per test caps
throughput for millisecond programs. A ``TestSession`` starts one sandbox (same layers, limits and
cgroup as ``Executor.launch``) running ``csrc/supervisor.c``, then for every test hands it the
argv and three fresh pipes over a unix socket; the supervisor forks and execs the test, waits,
kills and reaps whatever the test left behind, empties the scratch dirs and reports the exit
status. stdin/stdout/stderr flow between the host and the test directly (``process.pump``), with
the same caps and deadlines as a single launch, and outputs are compared on the host.

Anything abnormal (timeout, output over the cap, cgroup OOM, the test killing the supervisor, a
set-up failure) kills the whole sandbox; the next test gets a fresh one. A supervisor that died
while the sandbox still starts fine was killed by the test: that test is charged (RE), never the
others; if a fresh sandbox cannot start, the test is an InfraError.
"""
from __future__ import annotations

import array
import os
import socket
import subprocess
import time
from typing import Optional

from aletheia_ray.sandbox import isolation as iso
from aletheia_ray.sandbox.isolation import Limits
from aletheia_ray.sandbox.process import STDERR_CAP, RawRun, kill_group, pump
from aletheia_ray.sandbox.slot_access import SlotAccess

SUPERVISOR_NAME = "aletheia-supervisor"
READY_TIMEOUT_S = 10.0
SCRATCH_DIRS = (iso.SCRATCH_DIR, "/tmp", "/dev/shm")


class TestSession:
    """Runs the tests of one submission in one sandbox. Use as a context manager.
    ``slot``: the executor's slot (``Executor.slot_access()``): mode, uid, paths, sandboxed."""

    def __init__(self, slot: SlotAccess, prog: str, limits: Limits):
        self.slot, self.prog, self.limits = slot, prog, limits
        self.proc: Optional[subprocess.Popen] = None
        self.sock: Optional[socket.socket] = None
        self.cgroup: Optional[iso.SlotCgroup] = None

    def __enter__(self) -> "TestSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- lifecycle -------------------------------------------------------------------------
    def _start(self) -> str:
        """Start a sandbox with the supervisor; returns "" or why it could not start."""
        host_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        _, harness_in = self.slot.paths(self.prog)
        scratch = SCRATCH_DIRS if self.slot.mode == "bwrap" else ()
        argv = [os.path.join(harness_in, SUPERVISOR_NAME), str(child_end.fileno()), *scratch]
        try:
            with self.slot.sandboxed(argv, self.prog, False, self.limits,
                                     extra_fds=(child_end.fileno(),)) as cmd:
                try:
                    self.proc = subprocess.Popen(
                        cmd.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE, env=cmd.env, cwd=cmd.cwd, preexec_fn=cmd.preexec,
                        pass_fds=cmd.pass_fds, process_group=0, close_fds=True)
                except (OSError, subprocess.SubprocessError) as exc:
                    return f"cannot start the sandbox: {exc}"
                iso.register_child(self.proc.pid, True)
                self.cgroup = cmd.cgroup
                child_end.close()
                ready = _recv(host_end, READY_TIMEOUT_S)
                setup_error = cmd.setup_error()
        finally:
            child_end.close()
        if ready != b"READY":
            stderr = self._stderr()  # e.g. "bwrap: ..." (read before the kill closes the pipe)
            self._kill()
            host_end.close()
            return (setup_error or stderr or f"supervisor did not start ({ready!r})")[-500:]
        self.sock = host_end
        return ""

    def _stderr(self) -> str:
        if self.proc is None or self.proc.stderr is None:
            return ""
        os.set_blocking(self.proc.stderr.fileno(), False)
        try:
            return (self.proc.stderr.read() or b"").decode(errors="replace").strip()
        except OSError:
            return ""

    def _kill(self) -> None:
        """End the sandbox now (everything in it) and clean the slot."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.proc is not None:
            kill_group(self.proc.pid)  # bwrap dies, and with it its pid namespace
            self._reap_proc()
        iso.sweep(self.slot.uid, self.cgroup, thorough=True)

    def _reap_proc(self) -> None:
        try:
            self.proc.wait(timeout=10)
        finally:
            iso.register_child(self.proc.pid, False)
            if self.proc.stderr:
                self.proc.stderr.close()
            self.proc = None

    def close(self) -> None:
        """Close the socket (the supervisor exits and the sandbox with it), then reap."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            try:
                self.proc.wait(timeout=5)
                self._reap_proc()
                iso.sweep(self.slot.uid, self.cgroup)  # cheap: the cgroup should be empty now
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None:
            self._kill()
        iso.reap_orphans(self.slot.uid)

    # ---- one test ----------------------------------------------------------------------------
    def run(self, argv: list[str], stdin: bytes, wall_s: float,
            stdout_cap: int) -> tuple[RawRun, bool]:
        """Run one test in a fresh process; returns (raw run, whether the cgroup OOM-killed)."""
        if self.sock is None:
            why = self._start()
            if why:
                return RawRun(None, b"", b"", 0.0, launch_error=f"sandbox failed: {why}"), False
        cg = self.cgroup
        oom_before = cg.oom_kills() if cg else 0
        pipes = [os.pipe2(os.O_CLOEXEC) for _ in range(3)]
        child_fds = [pipes[0][0], pipes[1][1], pipes[2][1]]
        if self.slot.uid is not None:  # so the test can reopen them (/dev/stdout, /dev/stderr)
            for fd in child_fds:
                os.fchown(fd, self.slot.uid, self.slot.uid)
        start = time.monotonic()
        replies: list[bytes] = []
        try:
            payload = b"RUN\0" + b"\0".join(a.encode() for a in argv)
            self.sock.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                           array.array("i", child_fds))])
            sent = True
        except OSError:  # the supervisor is gone
            sent = False
            replies.append(b"")
        for fd in child_fds:
            os.close(fd)
        if not sent:
            os.close(pipes[0][1])
        try:  # pump owns the stdin write end from here
            got = pump(pipes[0][1] if sent else None, stdin, pipes[1][0], pipes[2][0],
                       start=start, wall_s=wall_s, stdout_cap=stdout_cap, stderr_cap=STDERR_CAP,
                       control_fd=self.sock.fileno() if sent else None,
                       on_control=replies.append)
        finally:
            os.close(pipes[1][0])
            os.close(pipes[2][0])
        wall = time.monotonic() - start
        reply = replies[0] if replies else b""
        raw = RawRun(None, bytes(got.out[:stdout_cap]), bytes(got.err), wall, got.timed_out,
                     None, got.overflow, exact_status=True)
        cleaned = False  # the supervisor left the sandbox ready for the next test
        if reply.startswith(b"EXIT "):
            fields = reply.split()
            raw.returncode = os.waitstatus_to_exitcode(int(fields[1]))
            raw.cpu_s = (int(fields[2]) + int(fields[3])) / 1e6
            cleaned = fields[5] == b"1"  # else it could not empty the scratch dirs (and exits)
        elif reply.startswith(b"FAIL "):
            raw.launch_error = "sandbox supervisor: " + reply[5:].decode(errors="replace")
        if got.timed_out or got.overflow or not cleaned:
            self._kill()
        oom = bool(cg) and cg.oom_kills() > oom_before
        if not reply and not (got.timed_out or got.overflow or oom):
            raw.returncode = -9  # the supervisor died: the test killed it, unless infra did
            raw.stderr += b"\n[the test killed the sandbox supervisor]"
            why = self._start()
            if why:
                raw.launch_error = f"sandbox failed: {why}"
        return raw, oom


def _recv(sock: socket.socket, timeout_s: float) -> bytes:
    sock.settimeout(timeout_s)
    try:
        return sock.recv(1024)
    except OSError:
        return b""
    finally:
        sock.settimeout(None)
