"""A tiny compiled exec wrapper that does the child-side setup of a sandboxed launch.

``subprocess`` with a Python ``preexec_fn`` (or ``user=``/``group=``) cannot use vfork: every launch
pays a full fork of the (large) host process plus a trip through the interpreter in the child
(measured ~16 ms per test). Instead the host vforks+execs this ~10 KiB C program, which joins the
slot's cgroups, sets the rlimits, drops to the slot uid (setgroups/setgid/setuid) and execs the
real command (bwrap ...). Same layers, same order as the Python preexec it replaces.

Setup failures are written to an error fd (first argument) that is close-on-exec, so the host can
tell "could not start" (infrastructure) from anything the sandboxed program prints. Built once per
host and uid (content-addressed cache in the temp dir) with the system C compiler; without one the
executor falls back to ``preexec_fn`` (slower, same isolation).
"""
from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from typing import Optional

from aletheia_ray.sandbox.isolation import Limits

SOURCE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static int err_fd = -1;

static void die(const char *what, const char *arg) {
  char buf[512];
  int n = snprintf(buf, sizeof buf, "aletheia-exec: %s %s: %s", what, arg ? arg : "",
                   strerror(errno));
  if (err_fd >= 0 && n > 0) { ssize_t w = write(err_fd, buf, (size_t)n); (void)w; }
  _exit(127);
}

static unsigned long long num(const char *s) { return strtoull(s, NULL, 10); }

static void limit(int res, const char *soft, const char *hard, const char *name) {
  struct rlimit r = {(rlim_t)num(soft), (rlim_t)num(hard)};
  if (setrlimit(res, &r) != 0) die("setrlimit", name);
}

/* argv: ERR_FD UID CPU_SOFT CPU_HARD NPROC NOFILE FSIZE AS NCG CGPATH... -- COMMAND... */
int main(int argc, char **argv) {
  if (argc < 11) { fprintf(stderr, "aletheia-exec: bad usage\n"); return 127; }
  err_fd = atoi(argv[1]);
  if (fcntl(err_fd, F_SETFD, FD_CLOEXEC) != 0) die("fcntl", "err fd");
  long uid = atol(argv[2]);
  int ncg = atoi(argv[9]), at = 10;
  for (int i = 0; i < ncg; ++i, ++at) {
    int fd = open(argv[at], O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "0", 1) != 1) die("join cgroup", argv[at]);
    close(fd);
  }
  if (at >= argc || strcmp(argv[at], "--") != 0 || at + 1 >= argc) die("bad usage", "--");
  limit(RLIMIT_CPU, argv[3], argv[4], "CPU");
  limit(RLIMIT_NPROC, argv[5], argv[5], "NPROC");
  limit(RLIMIT_NOFILE, argv[6], argv[6], "NOFILE");
  limit(RLIMIT_FSIZE, argv[7], argv[7], "FSIZE");
  limit(RLIMIT_CORE, "0", "0", "CORE");
  if (num(argv[8]) > 0) limit(RLIMIT_AS, argv[8], argv[8], "AS");
  if (uid >= 0) {
    if (setgroups(0, NULL) != 0) die("setgroups", "");
    if (setgid((gid_t)uid) != 0) die("setgid", argv[2]);
    if (setuid((uid_t)uid) != 0) die("setuid", argv[2]);
  }
  execvp(argv[at + 1], argv + at + 1);
  die("exec", argv[at + 1]);
  return 127;
}
"""

_lock = threading.Lock()
_built: dict[str, Optional[str]] = {}


def wrapper_path() -> Optional[str]:
    """Path of the compiled wrapper (built on first use in this process), or None without cc."""
    with _lock:
        if "path" not in _built:
            _built["path"] = _build()
        return _built["path"]


def _trusted(path: str) -> bool:
    """Owned by us and writable by nobody else (the cache lives in a shared /tmp)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _build() -> Optional[str]:
    """Build once per host and uid into a content-addressed dir in the temp dir; reuse it."""
    cc = shutil.which("cc", path="/usr/bin:/bin") or shutil.which("gcc", path="/usr/bin:/bin")
    if not cc:
        return None
    digest = hashlib.sha256(SOURCE.encode()).hexdigest()[:16]
    cache = os.path.join(tempfile.gettempdir(), f"aletheia-exec-{digest}-uid{os.geteuid()}")
    exe_name = "aletheia-exec"
    if _trusted(cache) and _trusted(os.path.join(cache, exe_name)):
        return os.path.join(cache, exe_name)
    build = tempfile.mkdtemp(prefix="aletheia-exec-build-")
    os.chmod(build, 0o711)
    src = os.path.join(build, "aletheia_exec.c")
    with open(src, "w") as fh:
        fh.write(SOURCE)
    proc = subprocess.run([cc, "-O2", "-o", os.path.join(build, exe_name), src],
                          capture_output=True, timeout=120)
    if proc.returncode != 0:
        shutil.rmtree(build, ignore_errors=True)
        raise RuntimeError(f"cannot build the exec wrapper with {cc}: "
                           f"{proc.stderr.decode(errors='replace')[-500:]}")
    os.chmod(os.path.join(build, exe_name), 0o755)
    try:
        os.rename(build, cache)  # atomic publish; fails if another process got there first
    except OSError:
        if not (_trusted(cache) and _trusted(os.path.join(cache, exe_name))):
            atexit.register(shutil.rmtree, build, True)  # untrusted squatter: use a private copy
            return os.path.join(build, exe_name)
        shutil.rmtree(build, ignore_errors=True)
    return os.path.join(cache, exe_name)


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
