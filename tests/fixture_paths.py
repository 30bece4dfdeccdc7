"""Where the tests find the shared fixture data: `../shared/data` beside the repo (as CI clones it)."""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO_ROOT.parent / "shared" / "data").resolve()
if not SHARED_DATA.is_dir():
    raise RuntimeError(f"fixture data not found at {SHARED_DATA}: clone the repo with shared/ beside it")
