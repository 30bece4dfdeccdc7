"""Cache of built model directories, shared by ``models`` (embedded:tiny) and ``smollm2``.

Cache root: ``$ALETHEIA_CACHE`` or ``~/.cache/aletheia_ray``; models live under ``<root>/models``.
A directory is built once per process-safe ``cached_build``: a file lock, a temp dir next to the
final one, then an atomic rename. This module imports neither of its users.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional


def cache_root(cache_dir: Optional[str] = None) -> Path:
    """Where embedded models are cached: the argument, ``$ALETHEIA_CACHE`` or ~/.cache."""
    root = cache_dir or os.environ.get("ALETHEIA_CACHE") or "~/.cache/aletheia_ray"
    return Path(root).expanduser()


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def cached_build(final: Path, build: Callable[[str], object]) -> str:
    """Run ``build(tmp_dir)`` once for ``final`` (process-safe): a file lock, a temp dir next to
    ``final``, then an atomic rename; a finished ``final`` (has config.json) is returned as is."""
    if (final / "config.json").is_file():
        return str(final)
    with _file_lock(final.parent / f".{final.name}.lock"):
        if (final / "config.json").is_file():  # another process built it while we waited
            return str(final)
        tmp = Path(tempfile.mkdtemp(prefix=f"{final.name}.tmp-", dir=final.parent))
        try:
            build(str(tmp))
            os.chmod(tmp, 0o755)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return str(final)
