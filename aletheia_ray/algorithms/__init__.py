"""Pure tensor functions for RL/SFT training: advantages, policy losses, logprobs, schedules."""
from aletheia_ray.algorithms.advantages import GroupAdvantages, group_relative_advantages
from aletheia_ray.algorithms.grpo import grpo_policy_loss, gspo_policy_loss, kl_k3, tis_weights
from aletheia_ray.algorithms.logprobs import entropy_from_logits, masked_mean, token_logprobs
from aletheia_ray.algorithms.registry import LOSSES, compute_loss
from aletheia_ray.algorithms.schedules import constant_with_warmup
from aletheia_ray.algorithms.sft import nll_loss

__all__ = [
    "GroupAdvantages", "group_relative_advantages", "grpo_policy_loss", "gspo_policy_loss", "kl_k3",
    "tis_weights", "entropy_from_logits", "masked_mean", "token_logprobs", "LOSSES", "compute_loss",
    "constant_with_warmup", "nll_loss",
]
