"""Weight sync, the pure parts: when to sync (``modes``: on-policy | batch-online | async+TIS),
how weights are bucketed (``buckets``) and the errors a transport raises (``errors``).

The transports themselves (they use Ray) are in the Ray layer: ``aletheia_ray.actors.weight_sync``.
"""

TRANSPORTS = ("object_store", "collective")  # sync.transport
COLLECTIVE_BACKENDS = ("gloo", "nccl")  # learner.backend (DeepSpeed) and the collective transport
