"""What the executor's helpers may use of one sandbox slot, without importing the executor.

``Executor`` (executor.py) owns a slot: its work dir, uid, cgroup and launch machinery. The
modules it delegates to -- ``probe.py`` (isolation probe), ``session.py`` (one sandbox for a
submission's stdio tests) and ``calls.py`` (call tests) -- receive a ``SlotAccess``: the slot's
settings and bound callables, built by ``Executor.slot_access()``. They never see the executor,
so dependencies run one way: executor -> helpers -> this module.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, ContextManager, Optional, Protocol

from aletheia_ray.sandbox import isolation as iso
from aletheia_ray.sandbox.isolation import Limits
from aletheia_ray.sandbox.languages import Language
from aletheia_ray.sandbox.process import RawRun
from aletheia_ray.sandbox.types import Status, Submission


@dataclass
class Launch:
    """One prepared sandboxed command (see ``Executor.sandboxed``)."""

    argv: list[str]
    env: dict[str, str]
    cwd: Optional[str]
    preexec: Optional[Callable[[], None]]
    pass_fds: tuple[int, ...]
    setup_error_fd: Optional[int]  # the exec wrapper reports set-up failures here
    cgroup: Optional[iso.SlotCgroup]

    def setup_error(self) -> str:
        if self.setup_error_fd is None:
            return ""
        try:
            return os.read(self.setup_error_fd, 4096).decode(errors="replace")
        except BlockingIOError:
            return ""


class LaunchFn(Protocol):
    """``Executor.launch``: run argv in the slot's sandbox -> (raw run, cgroup OOM-killed)."""

    def __call__(self, argv: list[str], prog: str, writable: bool, limits: Limits, stdin: bytes,
                 wall_s: float, stdout_cap: int, mode: Optional[str] = None,
                 progress_s: Optional[float] = None,
                 first_progress_s: Optional[float] = None) -> tuple[RawRun, bool]: ...


class SandboxedFn(Protocol):
    """``Executor.sandboxed``: the prepared command of one sandboxed launch (a context)."""

    def __call__(self, argv: list[str], prog: str, writable: bool, limits: Limits,
                 mode: Optional[str] = None,
                 extra_fds: tuple[int, ...] = ()) -> ContextManager[Launch]: ...


@dataclass(frozen=True)
class SlotAccess:
    """One slot's settings and launch callables, as the executor's helper modules see them."""

    mode: str  # "bwrap" (namespaces) | "none"
    uid: Optional[int]  # the slot's sandbox uid when running as root, else None
    new_dir: Callable[[], str]  # a fresh program dir under the slot's work dir
    paths: Callable[[str], tuple[str, str]]  # (program dir, harness dir) inside the sandbox
    launch: LaunchFn
    sandboxed: SandboxedFn
    classify: Callable[[RawRun, bool], tuple[Optional[Status], str]]  # run_outcome.classify_run


def limits_for(sub: Submission, lang: Language, cpu_s: float) -> Limits:
    """Limits of one run of ``sub``: ``cpu_s`` CPU seconds, its memory plus the runtime's."""
    return Limits(cpu_s=cpu_s, memory_mb=sub.memory_limit_mb + lang.memory_overhead_mb,
                  address_space=lang.address_space_limit)
