"""Build the sandbox's small C tools (``csrc/*.c``) once per host and uid, with the system cc.

The result is cached in a content-addressed directory of the temp dir (a changed source gets a new
directory), reused only if it is owned by us and writable by nobody else (the temp dir is shared).
Returns None when there is no C compiler: callers fall back to slower pure-Python paths.
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

CSRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc")
_lock = threading.Lock()
_built: dict[str, Optional[str]] = {}


def compiled_tool(source_name: str, exe_name: str) -> Optional[str]:
    """Path of ``csrc/<source_name>`` compiled to ``exe_name`` (built on first use), or None."""
    with _lock:
        if exe_name not in _built:
            _built[exe_name] = _build(source_name, exe_name)
        return _built[exe_name]


def _trusted(path: str) -> bool:
    """Owned by us and writable by nobody else (the cache lives in a shared /tmp)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _build(source_name: str, exe_name: str) -> Optional[str]:
    cc = shutil.which("cc", path="/usr/bin:/bin") or shutil.which("gcc", path="/usr/bin:/bin")
    if not cc:
        return None
    with open(os.path.join(CSRC, source_name)) as fh:
        source = fh.read()
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    cache = os.path.join(tempfile.gettempdir(), f"{exe_name}-{digest}-uid{os.geteuid()}")
    exe = os.path.join(cache, exe_name)
    if _trusted(cache) and _trusted(exe):
        return exe
    build = tempfile.mkdtemp(prefix=f"{exe_name}-build-")
    os.chmod(build, 0o711)
    src = os.path.join(build, source_name)
    with open(src, "w") as fh:
        fh.write(source)
    proc = subprocess.run([cc, "-O2", "-o", os.path.join(build, exe_name), src],
                          capture_output=True, timeout=120)
    if proc.returncode != 0:
        shutil.rmtree(build, ignore_errors=True)
        raise RuntimeError(f"cannot build {source_name} with {cc}: "
                           f"{proc.stderr.decode(errors='replace')[-500:]}")
    os.chmod(os.path.join(build, exe_name), 0o755)
    try:
        os.rename(build, cache)  # atomic publish; fails if another process got there first
    except OSError:
        if not (_trusted(cache) and _trusted(exe)):
            atexit.register(shutil.rmtree, build, True)  # untrusted squatter: use a private copy
            return os.path.join(build, exe_name)
        shutil.rmtree(build, ignore_errors=True)
    return exe
