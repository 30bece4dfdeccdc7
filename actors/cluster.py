"""The one way this project connects to Ray: attach to a running cluster (``ray job submit`` sets
RAY_ADDRESS) or start a local Ray, and shut down only what was started here."""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from typing import Iterator, Optional

import ray

QUIET_ENV = {"TOKENIZERS_PARALLELISM": "false"}
# Defaults for every actor's console, each overridable from the caller's environment. They drop
# start-up notices, not errors: vLLM logs ERROR and up, C++ (c10) warnings are dropped, and
# Python FutureWarnings (torch.distributed deprecations raised inside vLLM/DeepSpeed) are ignored.
# An actor's exception still reaches the driver (ray.get re-raises it; log_to_driver prints stderr).
LOG_ENV_DEFAULTS = {"VLLM_LOGGING_LEVEL": "ERROR", "TORCH_CPP_LOG_LEVEL": "ERROR", "PYTHONWARNINGS": "ignore::FutureWarning"}


@contextlib.contextmanager
def ray_session(address: Optional[str] = None, num_cpus: Optional[float] = None, temp_dir: Optional[str] = None,
                *, prefix: str = "aletheia_ray_", log_to_driver: bool = True) -> Iterator[Optional[str]]:
    """Yield the temp dir of a Ray started here (None when attached to a running one). A local Ray's
    logs are removed after a clean exit and kept (and named on stderr) after an error."""
    if ray.is_initialized():
        yield None
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
        try:
            yield None
        finally:
            ray.shutdown()
        return
    owned = temp_dir is None
    temp_dir = temp_dir or tempfile.mkdtemp(prefix=prefix, dir="/tmp")  # short: Ray's socket paths
    env = {**QUIET_ENV, **{k: os.environ.get(k, v) for k, v in LOG_ENV_DEFAULTS.items()}}
    ray.init(num_cpus=num_cpus, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=log_to_driver,
             runtime_env={"env_vars": env})
    ok = False
    try:
        yield temp_dir
        ok = True
    finally:
        ray.shutdown()
        if owned and ok:
            shutil.rmtree(temp_dir, ignore_errors=True)
        elif owned:
            print(f"Ray logs kept in {temp_dir}", file=sys.stderr)
