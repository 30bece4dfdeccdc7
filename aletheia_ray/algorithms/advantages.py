"""Group-relative advantages (GRPO): reward minus the group mean, divided by the group std."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass
class GroupAdvantages:
    advantages: torch.Tensor  # [N] float, one per sample, same order as the rewards
    frac_reward_zero_std: float  # fraction of groups whose rewards are all equal (no gradient)
    num_groups: int

    def metrics(self) -> dict[str, float]:
        return {
            "frac_reward_zero_std": self.frac_reward_zero_std,
            "adv/mean": float(self.advantages.mean()) if len(self.advantages) else 0.0,
            "adv/abs_mean": float(self.advantages.abs().mean()) if len(self.advantages) else 0.0,
        }


def group_relative_advantages(
    rewards: Sequence[float] | torch.Tensor,
    group_ids: Sequence[int] | torch.Tensor,
    *,
    eps: float = 1e-6,
    normalize_by_std: bool = True,
    unbiased_std: bool = True,
) -> GroupAdvantages:
    """A_i = (r_i - mean_g) / (std_g + eps) within each group g (samples of one prompt).

    Groups whose rewards are all equal (incl. groups of one sample) get advantage exactly 0 and are
    counted in ``frac_reward_zero_std``. ``unbiased_std`` follows TRL/verl (torch.std default).
    A reward that is None/NaN raises, naming the sample index: nothing silently becomes 0.
    """
    rewards_list = list(rewards.tolist() if isinstance(rewards, torch.Tensor) else rewards)
    ids = list(group_ids.tolist() if isinstance(group_ids, torch.Tensor) else group_ids)
    if len(rewards_list) != len(ids):
        raise ValueError(f"{len(rewards_list)} rewards but {len(ids)} group ids")
    for i, r in enumerate(rewards_list):
        if r is None or not math.isfinite(float(r)):
            raise ValueError(f"sample {i} (group {ids[i]}) has reward {r!r}; every sample needs a finite reward")
    values = torch.tensor(rewards_list, dtype=torch.float32)
    advantages = torch.zeros_like(values)
    members: dict[int, list[int]] = {}
    for i, g in enumerate(ids):
        members.setdefault(int(g), []).append(i)
    zero_std = 0
    for idx in members.values():
        group = values[idx]
        if len(idx) < 2 or bool((group == group[0]).all()):
            zero_std += 1
            continue
        centred = group - group.mean()
        if normalize_by_std:
            centred = centred / (group.std(unbiased=unbiased_std) + eps)
        advantages[idx] = centred
    num_groups = len(members)
    return GroupAdvantages(advantages, zero_std / num_groups if num_groups else 0.0, num_groups)


# advantage estimators by name (``register_algorithm(..., advantage=<name>)``): (rewards, group ids,
# normalize_by_std) -> GroupAdvantages
ADVANTAGE_ESTIMATORS = {"grpo": group_relative_advantages}
