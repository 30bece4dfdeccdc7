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


def run_process(argv: list[str], *, stdin: bytes, env: dict[str, str], wall_s: float,
                stdout_cap: int, stderr_cap: int = 64 << 10, cwd: Optional[str] = None,
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
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, cwd=cwd, preexec_fn=preexec,
                                pass_fds=pass_fds, process_group=0, close_fds=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return RawRun(None, b"", b"", 0.0, launch_error=f"cannot start {argv[0]}: {exc}")
    register_child(proc.pid, True)
    out, err = bytearray(), bytearray()
    timed_out = overflow = False
    stalled: Optional[int] = None
    sel = selectors.DefaultSelector()
    for stream, tag in ((proc.stdout, "out"), (proc.stderr, "err")):
        os.set_blocking(stream.fileno(), False)
        sel.register(stream, selectors.EVENT_READ, tag)
    pending = memoryview(stdin)
    if pending:
        os.set_blocking(proc.stdin.fileno(), False)
        sel.register(proc.stdin, selectors.EVENT_WRITE, "in")
    else:
        proc.stdin.close()
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
                timed_out = True
                if progress_s is not None and now < deadline:
                    stalled = lines_seen
                break
            for key, _ in sel.select(timeout=wait):
                if key.data == "in":
                    try:
                        n = os.write(key.fileobj.fileno(), pending[:1 << 16])
                    except (BrokenPipeError, OSError):
                        n = len(pending)
                    pending = pending[n:]
                    if not pending:
                        sel.unregister(key.fileobj)
                        key.fileobj.close()
                    continue
                chunk = os.read(key.fileobj.fileno(), 1 << 16)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                if key.data == "out":
                    newlines = chunk.count(b"\n")
                    if newlines:
                        lines_seen += newlines
                        last_progress = time.monotonic()
                    out += chunk
                    if len(out) > stdout_cap:
                        overflow = True
                        break
                elif len(err) < stderr_cap:
                    err += chunk[: stderr_cap - len(err)]
            if overflow:
                break
        if not (timed_out or overflow):  # both pipes at EOF: let it exit within the deadline
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
    finally:
        sel.close()
        if proc.poll() is None:
            _kill_group(proc)
        if kill_rest is not None:
            kill_rest()
        try:
            proc.wait(timeout=10)
        finally:
            register_child(proc.pid, False)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream and not stream.closed:
                stream.close()
    wall = time.monotonic() - start
    return RawRun(proc.returncode, bytes(out[:stdout_cap]), bytes(err), wall, timed_out,
                  stalled, overflow)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
