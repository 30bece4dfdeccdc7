"""Sync modes: when rollout weights are refreshed relative to learner updates (pure policy, no Ray).

The controller reads three answers from the policy and never hard-codes them:
  * ``updates_per_generation``: optimizer updates made from one generated batch (the rollout
    weights are synced after the last of them);
  * ``max_staleness``: how many updates generation may lag behind (0 = generation waits for the
    sync; 1 = the next batch is generated while this one trains);
  * ``tis_cap``: truncation of the per-token importance weight, or None for no TIS.

  ``on_policy``    generate -> update once -> sync (the paper's GRPO).
  ``batch_online`` generate one large batch -> ``updates_per_generation`` updates on disjoint
                   mini-batches of whole prompt groups (old logprobs fixed at generation time, so
                   later updates are off-policy and the clip / GSPO's sequence ratio matters)
                   -> sync after the last (BO-GRPO: 4 updates, GSPO loss).
  ``async_tis``    the next batch is generated while this one trains, from weights one update
                   behind; the loss multiplies each token by the truncated importance weight
                   min(exp(old - rollout), tis_cap) against the engine's sampling logprobs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

SYNC_MODES = ("on_policy", "batch_online", "async_tis")
DEFAULT_TIS_CAP = 2.0  # the paper's C


@dataclass(frozen=True)
class SyncPolicy:
    name: str
    updates_per_generation: int = 1
    max_staleness: int = 0
    tis_cap: Optional[float] = None  # set: the loss gets TIS weights (needs rollout logprobs)


def make_sync_policy(name: str, updates_per_generation: int = 1,
                     tis_cap: Optional[float] = None) -> SyncPolicy:
    """The policy of ``algorithm.sync_mode``; errors name the config key that is inconsistent."""
    if name not in SYNC_MODES:
        raise ValueError(f"algorithm.sync_mode: unknown {name!r}; known: {SYNC_MODES}")
    if updates_per_generation < 1:
        raise ValueError(f"algorithm.updates_per_generation: must be >= 1, got {updates_per_generation}")
    if name != "batch_online" and updates_per_generation != 1:
        raise ValueError(f"algorithm.updates_per_generation={updates_per_generation} needs "
                         f"algorithm.sync_mode=batch_online (got {name})")
    if tis_cap is not None and tis_cap < 1.0:
        raise ValueError(f"algorithm.tis_cap: must be >= 1 (a cap below 1 scales every token down), got {tis_cap}")
    if name == "async_tis":
        return SyncPolicy(name, 1, max_staleness=1, tis_cap=DEFAULT_TIS_CAP if tis_cap is None else tis_cap)
    return SyncPolicy(name, updates_per_generation, max_staleness=0, tis_cap=tis_cap)
