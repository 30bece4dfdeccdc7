"""Weight sync: learner rank 0 -> every rollout engine (object store or collective group).

``WeightSync`` (driver), ``WeightSenderMixin`` (learner rank actor), the vLLM worker extension in
``aletheia_ray.sync.vllm_extension``; pure bucketing in ``aletheia_ray.sync.buckets``.
"""
from aletheia_ray.sync.errors import SyncError, SyncTimeoutError
from aletheia_ray.sync.sender import WeightSenderMixin
from aletheia_ray.sync.transports import TRANSPORTS, WeightSync

VLLM_EXTENSION_CLS = "aletheia_ray.sync.vllm_extension.WeightReloadExtension"

__all__ = ["WeightSync", "WeightSenderMixin", "SyncError", "SyncTimeoutError", "TRANSPORTS", "VLLM_EXTENSION_CLS"]
