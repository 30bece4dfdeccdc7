"""Every loss in one readable place: GRPO/DAPO (clip-higher), GSPO, NLL and DPO, plus the two things
applied once, outside each loss's own term: the KL penalty to the reference (and TIS weights) and
the aggregation over tokens (``regularized_loss``).

A loss computes only its per-token policy term ``pg`` ([B, T]); aggregation divides token (or
sequence) SUMS by the GLOBAL count passed in, so results of micro-batches and data-parallel ranks
add up to the whole batch's value (with no global count: the local count, a plain mean). Every
loss returns ``(loss, metrics)`` with metrics aggregated the same way. DPO works on sequence
logprobs of (chosen, rejected) pairs instead, with precomputed reference logprobs and no KL term.
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


def masked_sum_rows(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-row sum of ``values`` over ``mask`` ([B, T] -> [B])."""
    return (values * mask).sum(-1)


# ---- aggregation: applied once, outside every loss ------------------------------------------------

def token_mean(values: torch.Tensor, mask: torch.Tensor, count: float) -> torch.Tensor:
    """DAPO token-level: the sum over every token / the (global) token count."""
    return masked_sum(values, mask) / count


def seq_mean_token_mean(values: torch.Tensor, mask: torch.Tensor, count: float) -> torch.Tensor:
    """GSPO: each sequence's token mean, summed over sequences / the (global) sequence count."""
    per_seq = masked_sum_rows(values, mask) / mask.sum(-1).clamp(min=1.0)
    return (per_seq * (mask.sum(-1) > 0).float()).sum() / count


AGGREGATIONS = {"token_mean": token_mean, "seq_mean_token_mean": seq_mean_token_mean}


def _count(mask: torch.Tensor, aggregation: str, global_count: Optional[float]) -> float:
    if global_count is None:
        local = mask.sum() if aggregation == "token_mean" else (mask.sum(-1) > 0).sum()
        global_count = float(local)
    if global_count <= 0:
        raise ValueError(f"loss needs a positive token/sequence count, got {global_count}")
    return float(global_count)


def _metric(values: torch.Tensor, mask: torch.Tensor, aggregation: str, count: float) -> float:
    if aggregation == "token_mean":
        return float(masked_sum(values, mask)) / count
    return float(seq_mean_token_mean(values, mask, 1.0)) / count


def regularized_loss(pg: torch.Tensor, logprobs: torch.Tensor, loss_mask: torch.Tensor, *, aggregation: str,
                     count: Optional[float], ref_logprobs: Optional[torch.Tensor] = None, beta: float = 0.0,
                     token_weights: Optional[torch.Tensor] = None,
                     per_token_metrics: Optional[dict[str, torch.Tensor]] = None) -> tuple[torch.Tensor, dict]:
    """``aggregate(pg * w + beta * KL_k3(pi || ref) * w)`` and its metrics (``pg_loss``, ``kl``, and
    each of ``per_token_metrics`` aggregated alike). ``token_weights`` w (TIS) weight the KL term too:
    the tokens were sampled by the rollout policy, and k3 = exp(ref - logp) - ... explodes on a token
    the trained policy has since made unlikely; weighted, it estimates KL(pi || ref) under pi again."""
    n = _count(loss_mask, aggregation, count)
    if token_weights is not None:
        pg = pg * token_weights
    per_token = pg
    metrics = {}
    if beta != 0.0:
        if ref_logprobs is None:
            raise ValueError(f"beta={beta} needs ref_logprobs (set beta=0 to train without a reference)")
        kl = kl_k3(logprobs, ref_logprobs)
        if token_weights is not None:
            kl = kl * token_weights
        per_token = per_token + beta * kl
        metrics["kl"] = _metric(kl.detach(), loss_mask, aggregation, n)
    loss = AGGREGATIONS[aggregation](per_token, loss_mask, n)
    metrics["pg_loss"] = _metric(pg.detach(), loss_mask, aggregation, n)
    for name, values in (per_token_metrics or {}).items():
        metrics[name] = _metric(values.detach().float(), loss_mask, aggregation, n)
    if token_weights is not None:
        metrics["tis_weight_mean"] = _metric(token_weights, loss_mask, aggregation, n)
    return loss, metrics


# ---- the losses' own terms ------------------------------------------------------------------------

def clipped_surrogate(ratio: torch.Tensor, advantages: torch.Tensor, eps_low: float,
                      eps_high: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO-clip with clip-higher: -min(r A, clip(r, 1 - eps_low, 1 + eps_high) A), and where it clipped."""
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - eps_low, 1.0 + eps_high) * advantages
    return -torch.minimum(unclipped, clipped), clipped < unclipped


def grpo_policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                     loss_mask: torch.Tensor, *, ref_logprobs: Optional[torch.Tensor] = None, eps_low: float = 0.2,
                     eps_high: float = 0.28, beta: float = 1e-3, global_num_tokens: Optional[float] = None,
                     token_weights: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO/DAPO: token ratio pi / pi_old, clip-higher, token-level sum / global token count, + beta*KL_k3.
    ``advantages`` is [B] (broadcast over tokens) or [B, T]; ``token_weights``: TIS weights."""
    ratio = torch.exp((logprobs - old_logprobs).clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT))
    pg, clipped = clipped_surrogate(ratio, expand_to_tokens(advantages, logprobs), eps_low, eps_high)
    return regularized_loss(pg, logprobs, loss_mask, aggregation="token_mean", count=global_num_tokens,
                            ref_logprobs=ref_logprobs, beta=beta, token_weights=token_weights,
                            per_token_metrics={"pg_clipfrac": clipped, "ratio_mean": ratio})


def gspo_policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                     loss_mask: torch.Tensor, *, ref_logprobs: Optional[torch.Tensor] = None, eps_low: float = 3e-4,
                     eps_high: float = 4e-4, beta: float = 0.0,
                     global_num_sequences: Optional[float] = None) -> tuple[torch.Tensor, dict[str, float]]:
    """GSPO: sequence ratio s_i = exp(mean_t(logp - old)) clipped per sequence; each sequence's token
    mean, summed over sequences / global sequence count. ``advantages`` is [B]."""
    if advantages.dim() != 1:
        raise ValueError("gspo needs one advantage per sequence ([B])")
    seq_log_ratio = masked_sum_rows(logprobs - old_logprobs, loss_mask) / loss_mask.sum(-1).clamp(min=1.0)
    seq_log_ratio = seq_log_ratio.clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
    # value = s_i on every token; gradient = s_i * grad logp_t (the GSPO-token form)
    token_ratio = torch.exp(seq_log_ratio.detach().unsqueeze(-1) + logprobs - logprobs.detach())
    pg, clipped = clipped_surrogate(token_ratio, advantages.unsqueeze(-1), eps_low, eps_high)
    return regularized_loss(pg, logprobs, loss_mask, aggregation="seq_mean_token_mean", count=global_num_sequences,
                            ref_logprobs=ref_logprobs, beta=beta,
                            per_token_metrics={"pg_clipfrac": clipped, "ratio_mean": token_ratio})


def nll_loss(logprobs: torch.Tensor, loss_mask: torch.Tensor, *,
             global_num_tokens: Optional[float] = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Supervised (cold start, RAFT): -sum(logp over response tokens) / (global) token count."""
    loss, metrics = regularized_loss(-logprobs, logprobs, loss_mask, aggregation="token_mean",
                                     count=global_num_tokens)
    return loss, {"nll": metrics["pg_loss"]}


def dpo_sigmoid_loss(chosen_logps: torch.Tensor, rejected_logps: torch.Tensor, ref_chosen_logps: torch.Tensor,
                     ref_rejected_logps: torch.Tensor, *, beta: float = 0.1,
                     global_num_pairs: Optional[float] = None) -> tuple[torch.Tensor, dict[str, float]]:
    """DPO, sigmoid form (TRL ``DPOTrainer`` ``loss_type="sigmoid"``, no label smoothing): per pair,
    -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))) over SEQUENCE logprobs (sums over each
    completion's tokens, [P] each); summed over pairs / the (global) pair count. Metrics as TRL names
    them: ``rewards/chosen`` = beta * (pi_c - ref_c), ``rewards/rejected``, ``rewards/margins``
    (their difference) and ``rewards/accuracies`` (chosen reward > rejected), each a pair mean.
    The reference logprobs are precomputed once (the paper's recipe), so they carry no gradient."""
    if not chosen_logps.shape == rejected_logps.shape == ref_chosen_logps.shape == ref_rejected_logps.shape:
        raise ValueError("dpo needs one sequence logprob per pair for chosen, rejected and both references")
    n = float(chosen_logps.shape[0]) if global_num_pairs is None else float(global_num_pairs)
    if n <= 0:
        raise ValueError(f"dpo needs a positive pair count, got {n}")
    chosen_rewards = beta * (chosen_logps - ref_chosen_logps.detach())
    rejected_rewards = beta * (rejected_logps - ref_rejected_logps.detach())
    loss = -torch.nn.functional.logsigmoid(chosen_rewards - rejected_rewards).sum() / n
    chosen_rewards, rejected_rewards = chosen_rewards.detach(), rejected_rewards.detach()
    return loss, {"rewards/chosen": float(chosen_rewards.sum()) / n,
                  "rewards/rejected": float(rejected_rewards.sum()) / n,
                  "rewards/margins": float((chosen_rewards - rejected_rewards).sum()) / n,
                  "rewards/accuracies": float((chosen_rewards > rejected_rewards).float().sum()) / n}
