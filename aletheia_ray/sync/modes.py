"""Sync modes: when rollout weights are refreshed relative to learner updates (pure policy, no Ray).

The controller asks the policy three questions and never hard-codes the answers:
  * ``updates_per_generation``: optimizer updates made from one generated batch;
  * ``sync_after_update(update_index)``: push learner weights to the rollout pool now?
  * ``max_staleness``: how many updates generation may lag behind (0 = strictly on-policy,
    generation waits for the sync; 1 = one-step-off async generation overlapping the update).

Implemented: ``on_policy`` (generate -> update once -> sync; the paper's GRPO). The next issue
adds ``batch_online`` (BO-GRPO: 4 updates per generated batch, GSPO loss, sync after the last
update) and ``async_tis`` (generation one step ahead, rollout logprobs kept for TIS).
"""
from __future__ import annotations

from dataclasses import dataclass

SYNC_MODES = ("on_policy", "batch_online", "async_tis")
IMPLEMENTED = ("on_policy",)


@dataclass(frozen=True)
class SyncPolicy:
    name: str
    updates_per_generation: int = 1
    max_staleness: int = 0
    needs_rollout_logprobs: bool = False  # TIS corrects with the engine's sampling logprobs

    def sync_after_update(self, update_index: int) -> bool:
        """``update_index`` counts updates made from the current generated batch (0-based)."""
        return update_index == self.updates_per_generation - 1

    @property
    def generation_waits_for_sync(self) -> bool:
        return self.max_staleness == 0


def make_sync_policy(name: str) -> SyncPolicy:
    if name not in SYNC_MODES:
        raise ValueError(f"unknown sync mode {name!r}; known: {SYNC_MODES}")
    if name not in IMPLEMENTED:
        raise NotImplementedError(f"sync mode {name!r} is not implemented yet (implemented: {IMPLEMENTED}); "
                                  "it is planned for the batch-online/async issue")
    return SyncPolicy(name="on_policy", updates_per_generation=1, max_staleness=0)
