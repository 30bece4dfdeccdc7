"""vLLM worker extension: in-place weight reload inside each rollout worker (no engine restart).

vLLM mixes this class into its worker (``LLM(worker_extension_cls=...)``); the rollout engine
actor calls the methods through ``llm.collective_rpc``. Weights are loaded with the worker's
``reload_weights(weights_iterator=..., is_checkpoint_format=True)``, the path that works on the
CPU backend too (``model.load_weights`` fails there because linear weights are repacked).
All buckets of one sync feed ONE ``reload_weights`` call through a lazy iterator, because vLLM
processes a layer only once all of its weights arrived (a fused qkv may straddle buckets); each
bucket gets its own buffer since vLLM may keep views of it until its layer is complete.

The caller resets the prefix cache afterwards (stale KV from old weights is otherwise reused).
vLLM warns "<Layer>: Failed to load weights" for every layer a reload did not feed; for layers with
no checkpoint weights (``COMPUTED_LAYERS``: rotary embeddings, whose cos/sin cache vLLM restores
itself) that warning is dropped, so every sync does not print it; any other layer still warns.
Method names are prefixed ``aletheia_`` so they never clash with vLLM's own worker methods.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Iterator

import torch

from aletheia_ray.actors.weight_sync import groups
from aletheia_ray.sync.buckets import BucketSpec, unpack_bucket


RELOAD_LOGGER = "vllm.model_executor.model_loader.reload.layerwise"
COMPUTED_LAYERS = frozenset({"RotaryEmbedding"})  # no checkpoint weights: nothing to load, restored by vLLM


class ComputedLayerReloadFilter(logging.Filter):
    """Drops vLLM's "Failed to load weights" warning for ``COMPUTED_LAYERS`` only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg == "%s: Failed to load weights" and bool(record.args)
                    and record.args[0] in COMPUTED_LAYERS)


@contextlib.contextmanager
def quiet_computed_layer_warnings():
    logger, flt = logging.getLogger(RELOAD_LOGGER), ComputedLayerReloadFilter()
    logger.addFilter(flt)
    try:
        yield
    finally:
        logger.removeFilter(flt)


class WeightReloadExtension:
    """Receiver endpoints mixed into the vLLM worker (``self`` is the worker)."""

    def _aletheia_device(self) -> torch.device:
        device = getattr(self, "device", None)
        return device if isinstance(device, torch.device) else torch.device("cpu")

    def _aletheia_reload(self, weights: Iterator[tuple[str, torch.Tensor]]) -> None:
        with quiet_computed_layer_warnings():
            self.reload_weights(weights_iterator=weights, is_checkpoint_format=True)

    def aletheia_load_from_object_refs(self, specs: list[BucketSpec], refs: list) -> int:
        """Fetch each bucket from the Ray object store (zero-copy on CPU) and reload weights.

        Needs a Ray-connected worker process: the engine runs vLLM in-process for TP=1 and with
        the Ray executor for TP>1.
        """
        import ray

        device = self._aletheia_device()

        def weights():
            for spec, ref in zip(specs, refs, strict=True):
                array = ray.get(ref)
                with warnings.catch_warnings():  # read-only shared memory; we only read it
                    warnings.simplefilter("ignore", UserWarning)
                    flat = torch.from_numpy(array)
                yield from unpack_bucket(spec, flat.to(device, non_blocking=False))

        self._aletheia_reload(weights())
        return sum(spec.nbytes for spec in specs)

    def aletheia_join_group(
        self, host: str, port: int, world_size: int, rank_offset: int, backend: str,
        timeout_s: float, local_host: str,
    ) -> int:
        """Join the learner's weight-sync group as rank ``rank_offset + worker rank``."""
        rank = rank_offset + int(getattr(self, "rank", 0))
        self._aletheia_group = groups.join_group(
            host=host, port=port, rank=rank, world_size=world_size, backend=backend,
            timeout_s=timeout_s, local_host=local_host,
        )
        self._aletheia_backend = backend
        return rank

    def aletheia_receive_broadcast(self, specs: list[BucketSpec]) -> int:
        """Receive every bucket of ``specs`` from the learner's broadcast and reload weights."""
        group = getattr(self, "_aletheia_group", None)
        if group is None:
            raise RuntimeError("rollout worker has not joined the weight-sync group")
        device = groups.group_device(self._aletheia_backend)

        def weights():
            for spec in specs:
                flat = torch.empty(spec.nbytes, dtype=torch.uint8, device=device)
                groups.broadcast_from_rank0(group, flat)
                yield from unpack_bucket(spec, flat)

        self._aletheia_reload(weights())
        return sum(spec.nbytes for spec in specs)

    def aletheia_close_group(self) -> None:
        self._aletheia_group = None
