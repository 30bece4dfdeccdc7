"""Run one process with stdin feeding, concurrent capped draining of stdout/stderr and deadlines."""
from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Callable, Optional

from aletheia_ray.sandbox.isolation import register_child

STDERR_CAP = 64 << 10


@dataclass
class RawRun:
    returncode: Optional[int]  # negative = killed by that signal (Popen convention)
    stdout: bytes
    stderr: bytes
    wall_s: float
    timed_out: bool = False  # wall deadline or progress deadline hit, we killed it
    stalled_at_line: Optional[int] = None  # progress deadline: index of the line that never came
    stdout_overflow: bool = False  # stdout passed its cap, we killed it
    launch_error: str = ""  # the process could not be started at all (infrastructure)
    exact_status: bool = False  # returncode is the program's own (not relayed by bwrap's init)
    cpu_s: Optional[float] = None  # user+sys CPU of the test's processes (None: not measurable)


@dataclass
class Pumped:
    """What ``pump`` collected from one run's pipes."""

    out: bytearray
    err: bytearray
    timed_out: bool = False
    stalled_at_line: Optional[int] = None
    overflow: bool = False


def pump(stdin_fd: Optional[int], stdin: bytes, out_fd: int, err_fd: int, *, start: float,
         wall_s: float, stdout_cap: int, stderr_cap: int, progress_s: Optional[float] = None,
         first_progress_s: Optional[float] = None, control_fd: Optional[int] = None,
         on_control: Optional[Callable[[bytes], None]] = None) -> Pumped:
    """Feed stdin and drain stdout/stderr concurrently until both reach EOF (and ``control_fd``,
    if given, delivered its message or closed), the wall/progress deadline passes or stdout
    passes its cap. ``stdin_fd`` is closed here once all of ``stdin`` is written (the program then
    sees EOF) or on return; the caller owns (and closes) the other fds."""
    res = Pumped(bytearray(), bytearray())
    sel = selectors.DefaultSelector()
    for fd, tag in ((out_fd, "out"), (err_fd, "err"), (control_fd, "control")):
        if fd is not None:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ, tag)
    pending = memoryview(stdin)
    if stdin_fd is not None and pending:
        os.set_blocking(stdin_fd, False)
        sel.register(stdin_fd, selectors.EVENT_WRITE, "in")
    elif stdin_fd is not None:
        os.close(stdin_fd)
        stdin_fd = None
    deadline = start + wall_s
    lines_seen, last_progress = 0, start
    try:
        while sel.get_map():
            now = time.monotonic()
            wait = deadline - now
            if progress_s is not None:
                limit = first_progress_s if (lines_seen == 0 and first_progress_s) else progress_s
                wait = min(wait, last_progress + limit - now)
            if wait <= 0:
                res.timed_out = True
                if progress_s is not None and now < deadline:
                    res.stalled_at_line = lines_seen
                return res
            for key, _ in sel.select(timeout=wait):
                fd = key.fd
                if key.data == "in":
                    try:
                        n = os.write(fd, pending[:1 << 16])
                    except OSError:  # the program exited or closed its stdin
                        n = len(pending)
                    pending = pending[n:]
                    if not pending:
                        sel.unregister(fd)
                        os.close(fd)
                        stdin_fd = None
                    continue
                try:
                    chunk = os.read(fd, 1 << 16)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if key.data == "control":
                    sel.unregister(fd)
                    if on_control is not None:
                        on_control(chunk)
                    continue
                if not chunk:
                    sel.unregister(fd)
                    continue
                if key.data == "out":
                    newlines = chunk.count(b"\n")
                    if newlines:
                        lines_seen += newlines
                        last_progress = time.monotonic()
                    res.out += chunk
                    if len(res.out) > stdout_cap:
                        res.overflow = True
                        return res
                elif len(res.err) < stderr_cap:
                    res.err += chunk[: stderr_cap - len(res.err)]
        return res
    finally:
        sel.close()
        if stdin_fd is not None:
            os.close(stdin_fd)


def run_process(argv: list[str], *, stdin: bytes, env: dict[str, str], wall_s: float,
                stdout_cap: int, stderr_cap: int = STDERR_CAP, cwd: Optional[str] = None,
                preexec: Optional[Callable[[], None]] = None, pass_fds: tuple[int, ...] = (),
                progress_s: Optional[float] = None, first_progress_s: Optional[float] = None,
                kill_rest: Optional[Callable[[], None]] = None) -> RawRun:
    """Start ``argv`` in its own process group and supervise it.

    ``progress_s``: when set, every stdout line must arrive within this many seconds of the
    previous one (``first_progress_s`` for the first); a stall kills the run (call tests).
    ``kill_rest`` is called after the process group is killed (cgroup/uid sweep).
    """
    start = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd,
                                preexec_fn=preexec, pass_fds=pass_fds, process_group=0,
                                close_fds=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return RawRun(None, b"", b"", 0.0, launch_error=f"cannot start {argv[0]}: {exc}")
    register_child(proc.pid, True)
    timed_out = False
    stdin_fd = None
    if proc.stdin:  # pump owns (and closes) the write end
        stdin_fd = os.dup(proc.stdin.fileno())
        proc.stdin.close()
    try:
        got = pump(stdin_fd, stdin, proc.stdout.fileno(),
                   proc.stderr.fileno(), start=start, wall_s=wall_s, stdout_cap=stdout_cap,
                   stderr_cap=stderr_cap, progress_s=progress_s, first_progress_s=first_progress_s)
        timed_out = got.timed_out
        if not (got.timed_out or got.overflow):  # both pipes at EOF: let it exit in time
            try:
                proc.wait(timeout=max(0.0, start + wall_s - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
    finally:
        if proc.poll() is None:
            kill_group(proc.pid)
        if kill_rest is not None:
            kill_rest()
        try:
            proc.wait(timeout=10)
        finally:
            register_child(proc.pid, False)
        for stream in (proc.stdout, proc.stderr):
            if stream and not stream.closed:
                stream.close()
    wall = time.monotonic() - start
    return RawRun(proc.returncode, bytes(got.out[:stdout_cap]), bytes(got.err), wall, timed_out,
                  got.stalled_at_line, got.overflow)


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
