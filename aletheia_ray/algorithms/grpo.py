"""GRPO / DAPO policy losses (clip-higher, token-level aggregation, k3 KL), TIS and GSPO.

Every loss returns ``(loss, metrics)``. ``loss`` and every metric are token (or sequence) SUMS
divided by the global count passed in, so results of micro-batches and data-parallel ranks add up
to the whole batch's value. With no global count, the local count is used (plain mean).
"""
from __future__ import annotations

from typing import Optional

import torch

from aletheia_ray.algorithms.logprobs import expand_to_tokens, masked_sum

LOG_RATIO_LIMIT = 20.0  # exp() of a larger log-ratio overflows; such tokens are clipped anyway


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(pi || ref): exp(ref - logp) - (ref - logp) - 1 (>= 0, unbiased)."""
    log_ratio = (ref_logprobs - logprobs).clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
    return torch.exp(log_ratio) - log_ratio - 1.0


def tis_weights(old_logprobs: torch.Tensor, rollout_logprobs: torch.Tensor, cap: float = 2.0) -> torch.Tensor:
    """Truncated importance-sampling weight min(exp(old - rollout), cap) per token (no gradient)."""
    log_ratio = (old_logprobs - rollout_logprobs).clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
    return torch.exp(log_ratio).clamp(max=cap).detach()


def _reference_kl(logprobs: torch.Tensor, ref_logprobs: Optional[torch.Tensor], beta: float) -> torch.Tensor:
    """Per-token k3 KL to the reference; a non-zero beta without reference logprobs is an error."""
    if ref_logprobs is None:
        raise ValueError(f"beta={beta} needs ref_logprobs (set beta=0 to train without a reference)")
    return kl_k3(logprobs, ref_logprobs)


def _count(mask: torch.Tensor, global_count: Optional[float]) -> float:
    count = float(mask.sum()) if global_count is None else float(global_count)
    if count <= 0:
        raise ValueError(f"loss needs a positive token/sequence count, got {count}")
    return count


def grpo_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    loss_mask: torch.Tensor,
    *,
    ref_logprobs: Optional[torch.Tensor] = None,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    beta: float = 1e-3,
    global_num_tokens: Optional[float] = None,
    token_weights: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO-clip surrogate with clip-higher, DAPO token-level sum / global token count, + beta*KL_k3.

    ``advantages`` is [B] (broadcast over tokens) or [B, T]. ``token_weights`` (TIS weights
    min(pi_old / pi_rollout, C)) multiply the policy-gradient term AND the k3 KL term per token: the
    tokens were sampled by the rollout policy, and k3 = exp(ref - logp) - ... explodes on a token the
    trained policy has since made unlikely; weighted, it estimates KL(pi || ref) under pi again.
    """
    n = _count(loss_mask, global_num_tokens)
    adv = expand_to_tokens(advantages, logprobs)
    ratio = torch.exp((logprobs - old_logprobs).clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT))
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - eps_low, 1.0 + eps_high) * adv
    pg = -torch.minimum(unclipped, clipped)
    if token_weights is not None:
        pg = pg * token_weights
    per_token = pg
    metrics = {}
    if beta != 0.0:
        kl = _reference_kl(logprobs, ref_logprobs, beta)
        if token_weights is not None:
            kl = kl * token_weights
        per_token = per_token + beta * kl
        metrics["kl"] = float(masked_sum(kl.detach(), loss_mask)) / n
    loss = masked_sum(per_token, loss_mask) / n
    metrics.update(
        pg_loss=float(masked_sum(pg.detach(), loss_mask)) / n,
        pg_clipfrac=float(masked_sum((clipped < unclipped).float(), loss_mask)) / n,
        ratio_mean=float(masked_sum(ratio.detach(), loss_mask)) / n,
    )
    if token_weights is not None:
        metrics["tis_weight_mean"] = float(masked_sum(token_weights, loss_mask)) / n
    return loss, metrics


def gspo_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    loss_mask: torch.Tensor,
    *,
    ref_logprobs: Optional[torch.Tensor] = None,
    eps_low: float = 3e-4,
    eps_high: float = 4e-4,
    beta: float = 0.0,
    global_num_sequences: Optional[float] = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GSPO: sequence ratio s_i = exp(mean_t(logp - old)) clipped per sequence; each sequence's
    token-mean objective, summed over sequences / global sequence count. ``advantages`` is [B]."""
    if advantages.dim() != 1:
        raise ValueError("gspo needs one advantage per sequence ([B])")
    seq_mask = (loss_mask.sum(-1) > 0).float()
    n = _count(seq_mask, global_num_sequences)
    tokens_per_seq = loss_mask.sum(-1).clamp(min=1.0)
    seq_log_ratio = masked_sum_rows(logprobs - old_logprobs, loss_mask) / tokens_per_seq
    seq_log_ratio = seq_log_ratio.clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
    # value = s_i on every token; gradient = s_i * grad logp_t (the GSPO-token form)
    token_ratio = torch.exp(seq_log_ratio.detach().unsqueeze(-1) + logprobs - logprobs.detach())
    adv = advantages.unsqueeze(-1)
    unclipped = token_ratio * adv
    clipped = token_ratio.clamp(1.0 - eps_low, 1.0 + eps_high) * adv
    per_token = -torch.minimum(unclipped, clipped)
    metrics = {}
    if beta != 0.0:
        kl = _reference_kl(logprobs, ref_logprobs, beta)
        per_token = per_token + beta * kl
        metrics["kl"] = float((masked_sum_rows(kl.detach(), loss_mask) / tokens_per_seq * seq_mask).sum()) / n
    per_seq = masked_sum_rows(per_token, loss_mask) / tokens_per_seq
    loss = (per_seq * seq_mask).sum() / n
    seq_clipped = ((clipped < unclipped).float() * loss_mask).amax(-1)
    metrics.update(
        pg_loss=float(loss.detach()) - metrics.get("kl", 0.0) * beta,
        pg_clipfrac=float((seq_clipped * seq_mask).sum()) / n,
        ratio_mean=float((seq_log_ratio.detach().exp() * seq_mask).sum()) / n,
    )
    return loss, metrics


def masked_sum_rows(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-row sum of ``values`` over ``mask`` ([B, T] -> [B])."""
    return (values * mask).sum(-1)
