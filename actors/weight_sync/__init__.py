"""Weight sync transports: learner rank 0 -> every rollout engine (object store or a collective group).

``WeightSync`` (driver, ``transports``), ``WeightSenderMixin`` (learner rank, ``sender``), the vLLM
worker extension (``vllm_extension``, loaded by class path inside each engine); the pure parts (when
to sync, bucketing, errors) are in ``aletheia_ray.sync``.
"""
VLLM_EXTENSION_CLS = "aletheia_ray.actors.weight_sync.vllm_extension.WeightReloadExtension"
