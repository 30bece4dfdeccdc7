"""Token log-probabilities, entropy and masked reductions from logits (pure tensor functions)."""
from __future__ import annotations

from typing import Optional

import torch


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log p(labels[b, t] | ...) from ``logits[b, t]`` ([B, T, V] and [B, T] -> [B, T]).

    ``temperature`` divides the logits first, so the values match a sampler's post-temperature
    ("processed") logprobs. Computed as ``logit - logsumexp`` to avoid a [B, T, V] log-softmax copy.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    picked = torch.gather(logits, -1, labels.long().unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the categorical distribution at each position ([B, T, V] -> [B, T])."""
    logits = logits.float()
    log_p = torch.log_softmax(logits, dim=-1)
    return -(log_p.exp() * log_p).sum(-1)


def masked_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum()


def masked_mean(values: torch.Tensor, mask: torch.Tensor, denominator: Optional[float] = None) -> torch.Tensor:
    """Sum of ``values`` over ``mask`` divided by ``denominator`` (default: the mask's own count).

    Passing the GLOBAL token count as ``denominator`` makes per-micro-batch / per-rank results
    add up to the batch mean (DAPO token-level aggregation under data parallelism).
    """
    if denominator is None:
        denominator = mask.sum().item()
    if denominator <= 0:
        raise ValueError(f"masked_mean needs a positive token count, got {denominator}")
    return masked_sum(values, mask) / denominator


def expand_to_tokens(per_sample_or_token: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-sample [B] tensor to per-token [B, T]; a [B, T] tensor is returned as is."""
    if per_sample_or_token.dim() == 1:
        return per_sample_or_token.unsqueeze(-1).expand_as(like)
    if per_sample_or_token.shape != like.shape:
        raise ValueError(f"per-token tensor shape {tuple(per_sample_or_token.shape)} != {tuple(like.shape)}")
    return per_sample_or_token


def causal_lm_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Log p(input_ids[:, t+1] | prefix) for a HF causal LM: [B, T] -> [B, T-1] (+ entropy, no grad).

    Right padding only, so default position ids (0..T-1) are right for every row.
    """
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[:, :-1]
    logprobs = token_logprobs(logits, input_ids[:, 1:], temperature)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = entropy_from_logits(logits / temperature if temperature != 1.0 else logits)
    return logprobs, entropy
