"""Isolation layers for one sandbox slot: bwrap argv, seccomp BPF, rlimits, cgroup v1, uid, reaping.

A slot is one concurrent execution lane on a host: it owns a distinct non-root uid
(``SANDBOX_UID_BASE + slot``) and, where the host allows, its own cgroup v1 memory/pids groups.
Two executors must never share a slot on one host (the post-test sweep kills the slot's uid).
"""
from __future__ import annotations

import ctypes
import errno
import logging
import os
import resource
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

log = logging.getLogger(__name__)

SANDBOX_UID_BASE = 61000
CGROUP_ROOT = "/sys/fs/cgroup"
CGROUP_PARENT = "aletheia-sandbox"
HARNESS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "harness")
# Inside the sandbox: program files (read-only at run time), writable scratch, harness drivers.
PROG_DIR, SCRATCH_DIR, HARNESS_MOUNT = "/prog", "/sandbox", "/harness"
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
PR_SET_CHILD_SUBREAPER = 36
SWEEP_WAIT_S = 5.0  # how long a thorough sweep waits for the slot's processes to disappear


@dataclass
class IsolationReport:
    """What the executor achieved: ``level`` is full | partial | none; ``layers`` say why."""

    level: str
    layers: dict[str, str] = field(default_factory=dict)


@dataclass
class Limits:
    """Per-process limits of one sandboxed run."""

    cpu_s: float
    memory_mb: int
    address_space: bool = True  # False for the JVM (it reserves far more than it uses)
    nproc: int = 128
    nofile: int = 256
    fsize_mb: int = 64
    scratch_mb: int = 64


def build_seccomp_bpf(path: str) -> None:
    """Write a BPF filter denying network sockets, ptrace, mount, namespaces, keyring, bpf."""
    import pyseccomp as sc

    filt = sc.SyscallFilter(sc.ALLOW)
    eperm = sc.ERRNO(errno.EPERM)
    for family in (2, 10, 16, 17):  # AF_INET, AF_INET6, AF_NETLINK, AF_PACKET
        filt.add_rule(eperm, "socket", sc.Arg(0, sc.EQ, family))
    for name in ("ptrace", "mount", "umount2", "unshare", "setns", "pivot_root", "chroot",
                 "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
                 "kexec_load", "init_module", "finit_module", "delete_module", "process_vm_readv",
                 "process_vm_writev", "open_by_handle_at", "fsopen", "fsmount", "move_mount"):
        filt.add_rule(eperm, name)
    # New namespaces via clone(): CLONE_NEWNS|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWCGROUP.
    for flag in (0x00020000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000,
                 0x02000000):
        filt.add_rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    filt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")  # libc falls back to the filtered clone()
    with open(path, "wb") as fh:
        filt.export_bpf(fh)


class SlotCgroup:
    """cgroup v1 memory + pids (+ cpuacct, to measure CPU time) groups of one slot (``None``
    layers when the host forbids them)."""

    PROBES = {"memory": ("memory.limit_in_bytes", str(1 << 30)), "pids": ("pids.max", "max"),
              "cpuacct": ("cpuacct.usage", "0")}

    def __init__(self, slot: int):
        self.dirs: dict[str, str] = {}
        self.problems: dict[str, str] = {}
        for ctrl, (probe, value) in self.PROBES.items():
            path = os.path.join(CGROUP_ROOT, ctrl, CGROUP_PARENT, f"slot{slot}")
            try:
                os.makedirs(path, exist_ok=True)
                with open(os.path.join(path, probe), "w") as fh:
                    fh.write(value)
                self.dirs[ctrl] = path
            except OSError as exc:
                self.problems[ctrl] = f"{path}: {exc.strerror or exc}"

    def _write(self, ctrl: str, name: str, value: str) -> None:
        with open(os.path.join(self.dirs[ctrl], name), "w") as fh:
            fh.write(value)

    def prepare(self, memory_mb: int, pids: int) -> None:
        if "memory" in self.dirs:
            self._write("memory", "memory.limit_in_bytes", str(memory_mb << 20))
            for name in ("memory.max_usage_in_bytes", "memory.failcnt"):
                try:
                    self._write("memory", name, "0")
                except OSError:
                    pass
        if "pids" in self.dirs:
            self._write("pids", "pids.max", str(pids))
        if "cpuacct" in self.dirs:
            self._write("cpuacct", "cpuacct.usage", "0")

    def cpu_s(self) -> Optional[float]:
        """CPU time (user+sys) used in the slot since ``prepare``; None without cpuacct."""
        if "cpuacct" not in self.dirs:
            return None
        with open(os.path.join(self.dirs["cpuacct"], "cpuacct.usage")) as fh:
            return int(fh.read()) / 1e9

    def procs_paths(self) -> list[str]:
        return [os.path.join(d, "cgroup.procs") for d in self.dirs.values()]

    def oom_kills(self) -> int:
        if "memory" not in self.dirs:
            return 0
        with open(os.path.join(self.dirs["memory"], "memory.oom_control")) as fh:
            for line in fh:
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
        return 0

    def peak_mb(self) -> Optional[float]:
        if "memory" not in self.dirs:
            return None
        with open(os.path.join(self.dirs["memory"], "memory.max_usage_in_bytes")) as fh:
            return int(fh.read()) / (1 << 20)

    def pids(self) -> list[int]:
        out: set[int] = set()
        for path in self.procs_paths():
            try:
                with open(path) as fh:
                    out.update(int(x) for x in fh.read().split())
            except OSError:
                pass
        return sorted(out)


def make_preexec(limits: Limits, uid: Optional[int], cgroup_procs: list[str]) -> Callable[[], None]:
    """Child-side setup between fork and exec: join cgroups, set rlimits, drop to the slot uid."""
    mem = limits.memory_mb << 20
    cpu_soft = max(1, int(limits.cpu_s + 0.999))
    settings = [
        (resource.RLIMIT_CPU, (cpu_soft, cpu_soft + 1)),
        (resource.RLIMIT_NPROC, (limits.nproc, limits.nproc)),
        (resource.RLIMIT_NOFILE, (limits.nofile, limits.nofile)),
        (resource.RLIMIT_FSIZE, (limits.fsize_mb << 20, limits.fsize_mb << 20)),
        (resource.RLIMIT_CORE, (0, 0)),
    ]
    if limits.address_space:
        settings.append((resource.RLIMIT_AS, (mem, mem)))
    procs_paths = list(cgroup_procs)

    def preexec() -> None:  # runs in the forked child: plain syscalls only
        for path in procs_paths:
            fd = os.open(path, os.O_WRONLY)
            os.write(fd, b"0")
            os.close(fd)
        for res, val in settings:
            resource.setrlimit(res, val)
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)

    return preexec


_live_children: set[int] = set()
_live_lock = threading.Lock()


def register_child(pid: int, live: bool) -> None:
    with _live_lock:
        (_live_children.add if live else _live_children.discard)(pid)


_subreaper_users = 0


def become_subreaper() -> bool:
    """Make this process adopt orphans of sandboxed runs (so they can be reaped, not pile up).

    Reference-counted per process: the flag is process-wide and also adopts orphans of every
    other descendant (e.g. a Ray raylet started from the same driver), which nobody else would
    reap; ``release_subreaper`` clears it when the last executor of the process closes."""
    global _subreaper_users
    with _live_lock:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if _subreaper_users == 0 and libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
                return False
        except OSError:
            return False
        _subreaper_users += 1
        return True


def release_subreaper() -> None:
    """Undo one ``become_subreaper``; the last one clears the flag (later orphans go to init,
    which reaps them). Zombies already adopted are the caller's to reap (``sweep``)."""
    global _subreaper_users
    with _live_lock:
        if _subreaper_users == 0:
            return
        _subreaper_users -= 1
        if _subreaper_users == 0:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def _proc_status(pid: int) -> tuple[int, int, str]:
    """(ppid, real uid, state) of a process, from /proc."""
    ppid = uid = -1
    state = "?"
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("State:"):
                state = line.split()[1]
            elif line.startswith("PPid:"):
                ppid = int(line.split()[1])
            elif line.startswith("Uid:"):
                uid = int(line.split()[1])
    return ppid, uid, state


def pids_of_uid(uid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if _proc_status(int(name))[1] == uid:
                    out.append(int(name))
            except (OSError, ValueError, IndexError):
                pass
    return out


def sweep(uid: Optional[int], cgroup: Optional[SlotCgroup], thorough: bool = False) -> int:
    """SIGKILL everything left in the slot and reap adopted zombies; returns how many were killed.

    With a cgroup its member list is authoritative (cheap); without one, or when ``thorough``,
    every process of the slot's (non-root) uid is killed too."""
    targets = set(cgroup.pids() if cgroup else [])
    if (thorough or not cgroup) and uid is not None and uid != 0:
        targets.update(pids_of_uid(uid))
    killed = 0
    for pid in targets:
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except OSError:
            pass
    if killed or thorough:
        reap_orphans(uid)
    if thorough and uid is not None and uid != 0:
        # a killed pid namespace dies asynchronously: wait (bounded) until its last member is
        # gone and reap what was adopted, so nothing of this run outlives it
        deadline = time.monotonic() + SWEEP_WAIT_S
        while (left := pids_of_uid(uid)) and time.monotonic() < deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.01)
            reap_orphans(uid)
    return killed


def reap_orphans(uid: Optional[int]) -> None:
    """Reap zombies re-parented to us (we are a subreaper) that belong to the slot's uid.

    bubblewrap's outer process exits without waiting for its pid-1 child, so runs leave such
    zombies. Only zombies of this slot's uid are reaped (a slot is used by one thread at a time,
    so none of them is a Popen child still being waited for); our own live Popen children are
    skipped. Fast path: peek with waitid(WNOWAIT); if another zombie blocks the peek, scan /proc."""
    with _live_lock:
        live = set(_live_children)
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None:
            return
        if info.si_pid in live or not _reap_if_ours(info.si_pid, uid):
            break
    me = os.getpid()
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) not in live:
            try:
                if _proc_status(int(name))[0] == me:
                    _reap_if_ours(int(name), uid)
            except (OSError, ValueError):
                pass


def _reap_if_ours(pid: int, uid: Optional[int]) -> bool:
    try:
        _, puid, state = _proc_status(pid)
    except (OSError, ValueError):
        return False
    if state != "Z" or (uid is not None and puid != uid):
        return False
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return True


def resolve_binary(name: str) -> str:
    path = shutil.which(name, path="/usr/bin:/bin")
    if not path:
        raise FileNotFoundError(f"{name} not found in /usr/bin (needed inside the sandbox)")
    return os.path.realpath(path)


def bwrap_argv(prog_host_dir: str, prog_writable: bool, limits: Limits, seccomp_fd: Optional[int],
               harness_host_dir: str = HARNESS_DIR, extra_ro: tuple[str, ...] = ()) -> list[str]:
    """bubblewrap command prefix: all namespaces, read-only /usr, tmpfs scratch, clean env."""
    argv = ["/usr/bin/bwrap", "--unshare-all", "--die-with-parent", "--new-session",
            "--cap-drop", "ALL", "--hostname", "sandbox",
            "--ro-bind", "/usr", "/usr"]
    for link in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{link}"):
            argv += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
        elif os.path.isdir(f"/{link}"):
            argv += ["--ro-bind", f"/{link}", f"/{link}"]
    for path in extra_ro:
        if os.path.exists(path):
            argv += ["--ro-bind", path, path]
    size = str(limits.scratch_mb << 20)
    argv += ["--proc", "/proc", "--dev", "/dev",
             "--size", size, "--tmpfs", "/dev/shm",
             "--size", size, "--tmpfs", "/tmp",
             "--size", size, "--tmpfs", SCRATCH_DIR,
             "--ro-bind", harness_host_dir, HARNESS_MOUNT,
             "--bind" if prog_writable else "--ro-bind", prog_host_dir, PROG_DIR,
             "--chdir", PROG_DIR if prog_writable else SCRATCH_DIR,
             "--clearenv", "--setenv", "PATH", SANDBOX_PATH, "--setenv", "LANG", "C.UTF-8",
             "--setenv", "HOME", SCRATCH_DIR, "--setenv", "TMPDIR", "/tmp"]
    # bwrap's root and /dev are tmpfs without a size limit: make them read-only (only the
    # size-limited /tmp, /dev/shm, /sandbox and, for the compiler, /prog stay writable)
    argv += ["--remount-ro", "/dev", "--remount-ro", "/"]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    return argv


BWRAP_ENV = {"PATH": SANDBOX_PATH, "LANG": "C.UTF-8"}  # bwrap's own env = what pid 1 inside shows
