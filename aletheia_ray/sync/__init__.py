"""Weight sync: learner rank 0 -> every rollout engine (object store or collective group).

``WeightSync`` (driver), ``WeightSenderMixin`` (learner rank actor), the vLLM worker extension in
``aletheia_ray.sync.vllm_extension``; pure bucketing in ``aletheia_ray.sync.buckets``; when to
sync (on-policy | batch-online | async+TIS) in ``aletheia_ray.sync.modes``.

The Ray-facing names are imported on first use, so the pure parts (``modes``, ``buckets``) load
without Ray (the config schema uses ``modes``).
"""
from importlib import import_module

VLLM_EXTENSION_CLS = "aletheia_ray.sync.vllm_extension.WeightReloadExtension"
_LAZY = {"WeightSync": "transports", "TRANSPORTS": "transports", "WeightSenderMixin": "sender",
         "SyncError": "errors", "SyncTimeoutError": "errors"}

__all__ = [*_LAZY, "VLLM_EXTENSION_CLS"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"aletheia_ray.sync.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'aletheia_ray.sync' has no attribute {name!r}")
