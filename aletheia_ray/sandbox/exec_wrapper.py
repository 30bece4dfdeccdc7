"""A tiny compiled exec wrapper that does the child-side setup of a sandboxed launch.

``subprocess`` with a Python ``preexec_fn`` (or ``user=``/``group=``) cannot use vfork: every launch
pays a full fork of the (large) host process plus a trip through the interpreter in the child
(measured ~16 ms per test). Instead the host vforks+execs this ~10 KiB C program, which joins the
slot's cgroups, sets the rlimits, drops to the slot uid (setgroups/setgid/setuid) and execs the
real command (bwrap ...). Same layers, same order as the Python preexec it replaces.

Setup failures are written to an error fd (first argument) that is close-on-exec, so the host can
tell "could not start" (infrastructure) from anything the sandboxed program prints. The C source is
``csrc/exec_wrapper.c``, built once per host and uid (``native.py``); without a C compiler the
executor falls back to ``preexec_fn`` (slower, same isolation).
"""
from __future__ import annotations

from typing import Optional

from aletheia_ray.sandbox.isolation import Limits
from aletheia_ray.sandbox.native import compiled_tool


def wrapper_path() -> Optional[str]:
    """Path of the compiled wrapper (built once per host and uid), or None without a C compiler."""
    return compiled_tool("exec_wrapper.c", "aletheia-exec")


def wrapped_argv(exe: str, err_fd: int, limits: Limits, uid: Optional[int],
                 cgroup_procs: list[str], argv: list[str]) -> list[str]:
    """``argv`` prefixed by the wrapper and its settings (same values as ``make_preexec``)."""
    mem = limits.memory_mb << 20
    cpu_soft = max(1, int(limits.cpu_s + 0.999))
    fsize = limits.fsize_mb << 20
    return [exe, str(err_fd), str(-1 if uid is None else uid), str(cpu_soft), str(cpu_soft + 1),
            str(limits.nproc), str(limits.nofile), str(fsize),
            str(mem if limits.address_space else 0), str(len(cgroup_procs)), *cgroup_procs,
            "--", *argv]
