"""Host-wide claim of a sandbox slot, so two executors never share one.

A slot's uid and cgroup are swept after every run (everything of the uid is SIGKILLed), so a
second executor on the same slot would have its sandboxes killed mid-run (seen as a bwrap probe
dying with exit -9 and as programs failing in the middle). The claim is an ``flock`` on a file
per slot: the kernel drops it when the holder closes it or dies, so a crashed executor or a
killed Ray actor never leaves a stale claim behind.
"""
from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import time
from typing import Optional

log = logging.getLogger(__name__)

SLOT_LOCK_DIR = os.path.join(tempfile.gettempdir(), "aletheia-sandbox-slots")
SLOT_CLAIM_WAIT_S = 30.0  # a previous holder may still be closing (its final sweep takes seconds)


def _holder(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip() or "unknown holder"
    except OSError:
        return "unknown holder"


def claim_slot(slot: int, wait_s: Optional[float] = None) -> int:
    """Hold slot ``slot`` for this process; returns the lock's fd (``release_slot`` drops it).

    Waits up to ``wait_s`` (default ``SLOT_CLAIM_WAIT_S``) for a current holder, then raises an
    error naming the slot and the holder's pid and command line."""
    wait_s = SLOT_CLAIM_WAIT_S if wait_s is None else wait_s
    os.makedirs(SLOT_LOCK_DIR, mode=0o755, exist_ok=True)
    path = os.path.join(SLOT_LOCK_DIR, f"slot{slot}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    deadline = time.monotonic() + wait_s
    logged = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise RuntimeError(
                    f"sandbox slot {slot} is held by another executor ({_holder(path)}) and was "
                    f"not released within {wait_s:.0f} s; give concurrent executors distinct "
                    "slots (Executor slot=, run_local slot_base=, SandboxPool slot_offset=)"
                ) from None
            if not logged:
                log.warning("sandbox slot %d is held (%s); waiting up to %.0f s", slot,
                            _holder(path), wait_s)
                logged = True
            time.sleep(0.05)
    with open(f"/proc/{os.getpid()}/cmdline", "rb") as fh:
        cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()[:200]
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}: {cmdline}\n".encode(), 0)
    return fd


def release_slot(fd: int) -> None:
    os.close(fd)  # closing the only descriptor of the lock drops the flock
