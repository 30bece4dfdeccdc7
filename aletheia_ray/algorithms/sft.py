"""Supervised (cold-start / RAFT) loss: token-level mean negative log-likelihood."""
from __future__ import annotations

from typing import Optional

import torch

from aletheia_ray.algorithms.logprobs import masked_sum


def nll_loss(
    logprobs: torch.Tensor, loss_mask: torch.Tensor, *, global_num_tokens: Optional[float] = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """-sum(logp over response tokens) / token count (global count under data parallelism)."""
    n = float(loss_mask.sum()) if global_num_tokens is None else float(global_num_tokens)
    if n <= 0:
        raise ValueError(f"nll_loss needs a positive token count, got {n}")
    loss = -masked_sum(logprobs, loss_mask) / n
    return loss, {"nll": float(loss.detach())}
