"""Learner side of weight sync: a mixin for the learner rank actor that owns the weights.

The host class implements ``named_weights_for_sync() -> Iterator[(name, tensor)]`` yielding the
FULL weights in HF checkpoint names (including ``lm_head.weight`` when embeddings are tied).
Under ZeRO-2 every rank holds full parameters, so rank 0 alone is the sender. Tensors are copied
into fresh bucket buffers, so ZeRO's flat-buffer views are never pickled.
"""
from __future__ import annotations

from typing import Iterator, Optional

import torch

from aletheia_ray.actors.weight_sync import groups
from aletheia_ray.sync.buckets import BucketSpec, iter_packed_buckets, plan_buckets


class WeightSenderMixin:
    """Adds the weight-sync sender endpoints to a Ray actor class (learner rank 0)."""

    _ws_store = None
    _ws_group = None
    _ws_backend: Optional[str] = None

    def named_weights_for_sync(self) -> Iterator[tuple[str, torch.Tensor]]:
        raise NotImplementedError(f"{type(self).__name__} must implement named_weights_for_sync()")

    # ---- object-store transport -------------------------------------------------------------
    def weight_sync_put_buckets(self, bucket_bytes: int) -> tuple[list[BucketSpec], list]:
        """Pack the weights into buckets and ``ray.put`` each; return (specs, object refs)."""
        import ray

        specs, refs = [], []
        with torch.no_grad():
            for spec, flat in iter_packed_buckets(self.named_weights_for_sync(), bucket_bytes, "cpu"):
                specs.append(spec)
                refs.append(ray.put(flat.numpy()))
        return specs, refs

    # ---- collective transport ---------------------------------------------------------------
    def weight_sync_manifest(self, bucket_bytes: int) -> list[BucketSpec]:
        """The bucket layout the next broadcast will use (receivers allocate from it)."""
        metas = [(n, t.dtype, tuple(t.shape)) for n, t in self.named_weights_for_sync()]
        return plan_buckets(metas, bucket_bytes)

    def weight_sync_open_group(self, world_size: int, backend: str, timeout_s: float) -> tuple[str, int]:
        """Host the group's store; return its (host, port) for the receivers."""
        import ray

        self.weight_sync_close_group()
        host = ray.util.get_node_ip_address()
        self._ws_store = groups.open_store(host, world_size, timeout_s)
        self._ws_join_args = dict(host=host, port=self._ws_store.port, rank=0, world_size=world_size,
                                  backend=backend, timeout_s=timeout_s, local_host=host)
        self._ws_backend = backend
        return host, self._ws_store.port

    def weight_sync_join_group(self) -> None:
        """Join as rank 0 (call concurrently with every receiver's join)."""
        if self._ws_store is None:
            raise RuntimeError("weight_sync_join_group() before weight_sync_open_group()")
        self._ws_group = groups.join_group(store=self._ws_store, **self._ws_join_args)

    def weight_sync_broadcast(self, specs: list[BucketSpec], bucket_bytes: int) -> int:
        """Broadcast every bucket of ``specs`` (the manifest the receivers got); return bytes."""
        if self._ws_group is None:
            raise RuntimeError("weight_sync_broadcast() before the weight-sync group was joined")
        device = groups.group_device(self._ws_backend)
        sent = 0
        with torch.no_grad():
            packed = iter_packed_buckets(self.named_weights_for_sync(), bucket_bytes, device)
            for expected, (spec, flat) in zip(specs, packed, strict=True):
                if spec != expected:
                    raise RuntimeError(
                        "weights changed between manifest and broadcast (first tensor "
                        f"{expected.tensors[0].name!r}); named_weights_for_sync() must be stable"
                    )
                groups.broadcast_from_rank0(self._ws_group, flat)
                sent += spec.nbytes
        return sent

    def weight_sync_close_group(self) -> None:
        """Drop the group and its store (receivers should close theirs too)."""
        self._ws_group = None
        self._ws_store = None

