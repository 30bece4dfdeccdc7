"""The rollout engines' weights as the controller moves them, learner -> engines, with what has to
happen around a sync in one place:

* colocated (``colocate.sleep_rollout``): the engines ``sleep`` while the learner trains (vLLM sleep
  mode frees their GPU memory), then wake their weights, load the new ones, and only then wake
  their KV cache (verl's order: the cache is allocated again once the new weights are in);
* a dead engine is replaced before the sync and the sync is redone if one dies during it
  (``rollout_recovery.sync_with_recovery``);
* a replaced engine gets the learner's current weights (``load_into``, the pool's ``weight_loader``).
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Optional

from aletheia_ray.actors.colocation import call_engines
from aletheia_ray.actors.rollout_recovery import sync_with_recovery
from aletheia_ray.actors.weight_sync.transports import WeightSync


class RolloutWeights:
    """``sleep_level``: the engines' vLLM sleep level while the learner trains, None: they never sleep.
    ``learner_holds_rollout_weights``: False in async_tis, where the engines generate from weights
    one update behind the learner's, so a replaced engine cannot be given the ones the rest of its
    batch came from."""

    def __init__(self, weight_sync: WeightSync, learner, pool, *, sleep_level: Optional[int],
                 learner_holds_rollout_weights: bool):
        self.weight_sync, self.learner, self.pool = weight_sync, learner, pool
        self.sleep_level = sleep_level
        self.learner_holds_rollout_weights = learner_holds_rollout_weights
        pool.weight_loader = self.load_into  # a replaced engine (actors/rollout_recovery.py)

    def sleep(self) -> None:
        """Every engine releases its GPU memory for training (nothing generates meanwhile: async_tis
        is refused with colocation)."""
        if self.sleep_level is not None:
            call_engines(self.pool.engines, "sleep", self.sleep_level)

    def _wake(self, tags: list[str]) -> None:
        if self.sleep_level is not None:
            call_engines(self.pool.engines, "wake_up", tags)

    def sync(self) -> dict[str, float]:
        """Learner -> engines (sleeping engines: wake the weights, load them, then wake the KV cache)."""
        self._wake(["weights"])
        metrics = sync_with_recovery(self.weight_sync, self.learner, self.pool)
        self._wake(["kv_cache"])
        return metrics

    def load_into(self, engine_indices: list[int]) -> None:
        """Load the learner's current weights into replaced engines through the object store, whatever
        ``sync.transport`` is (the next regular sync builds a new collective group with them)."""
        if not self.learner_holds_rollout_weights:
            raise RuntimeError("async_tis generates while the learner updates: the weights the rest of the batch "
                               "comes from are no longer on the learner; resume from the last checkpoint")
        replaced = SimpleNamespace(engines=[self.pool.engines[i] for i in engine_indices])
        WeightSync("object_store", self.weight_sync.bucket_bytes / 2**20, self.weight_sync.timeout_s).sync(
            self.learner, replaced)
