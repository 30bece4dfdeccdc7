"""Loss names -> functions of (logprobs, TrainBatch micro-batch, global counts, loss kwargs).

The learner calls ``compute_loss(name, logprobs, batch, global_num_tokens=..,
global_num_sequences=.., **loss_kwargs)``. Metrics come back additive over micro-batches/ranks
(see ``grpo.py``). Unknown loss names and unknown kwargs raise errors naming them.
"""
from __future__ import annotations

import inspect
from typing import Callable, Optional

import torch

from aletheia_ray.algorithms.grpo import grpo_policy_loss, gspo_policy_loss, tis_weights
from aletheia_ray.algorithms.sft import nll_loss
from aletheia_ray.batch import TrainBatch


def _old_logprobs(logprobs: torch.Tensor, batch: TrainBatch) -> torch.Tensor:
    # On-policy with one update per batch: the old policy is the current one (ratio == 1).
    return logprobs.detach() if batch.old_logprobs is None else batch.old_logprobs


def grpo(logprobs, batch, *, global_num_tokens, global_num_sequences, eps_low=0.2, eps_high=0.28,
         beta=1e-3, tis_cap: Optional[float] = None):
    """GRPO/DAPO; ``tis_cap`` turns on truncated importance sampling against rollout logprobs."""
    old = _old_logprobs(logprobs, batch)
    weights = None
    if tis_cap is not None:
        if batch.rollout_logprobs is None:
            raise ValueError("tis_cap is set but the batch has no rollout_logprobs")
        weights = tis_weights(old, batch.rollout_logprobs, tis_cap)
    return grpo_policy_loss(
        logprobs, old, batch.advantages, batch.loss_mask, ref_logprobs=batch.ref_logprobs,
        eps_low=eps_low, eps_high=eps_high, beta=beta, global_num_tokens=global_num_tokens,
        token_weights=weights,
    )


def gspo(logprobs, batch, *, global_num_tokens, global_num_sequences, eps_low=3e-4, eps_high=4e-4, beta=0.0):
    """GSPO (sequence-level ratio) for batch-online training."""
    return gspo_policy_loss(
        logprobs, _old_logprobs(logprobs, batch), batch.advantages, batch.loss_mask,
        ref_logprobs=batch.ref_logprobs, eps_low=eps_low, eps_high=eps_high, beta=beta,
        global_num_sequences=global_num_sequences,
    )


def sft(logprobs, batch, *, global_num_tokens, global_num_sequences):
    """NLL on the given completions (cold start; RAFT = the same loss on selected correct samples)."""
    return nll_loss(logprobs, batch.loss_mask, global_num_tokens=global_num_tokens)


LOSSES: dict[str, Callable] = {"grpo": grpo, "gspo": gspo, "sft": sft, "raft": sft}
_COUNT_ARGS = {"global_num_tokens", "global_num_sequences"}


def check_loss_kwargs(name: str, loss_kwargs: dict) -> Callable:
    """Return the loss function for ``name``; raise naming an unknown loss or kwarg."""
    if name not in LOSSES:
        raise KeyError(f"unknown loss {name!r}; known losses: {sorted(LOSSES)}")
    fn = LOSSES[name]
    allowed = set(inspect.signature(fn).parameters) - {"logprobs", "batch"} - _COUNT_ARGS
    unknown = set(loss_kwargs) - allowed
    if unknown:
        raise KeyError(f"unknown loss_kwargs {sorted(unknown)} for loss {name!r}; allowed: {sorted(allowed)}")
    return fn


def compute_loss(name: str, logprobs: torch.Tensor, batch: TrainBatch, *, global_num_tokens: float,
                 global_num_sequences: float, **loss_kwargs) -> tuple[torch.Tensor, dict[str, float]]:
    fn = check_loss_kwargs(name, loss_kwargs)
    return fn(logprobs, batch, global_num_tokens=global_num_tokens,
              global_num_sequences=global_num_sequences, **loss_kwargs)
