"""Pure helpers between stages: prompts -> token ids, generations -> ``TrainBatch``, SFT targets.

Kept out of the controller so they are testable without Ray. Token alignment follows
``TrainBatch``: per-token tensors are aligned with ``input_ids[:, 1:]``, so the response token at
position ``p`` (in ``input_ids``) has its logprob / loss-mask entry at ``p - 1``.
"""
from __future__ import annotations

import random
from typing import Any, Sequence

import torch

from aletheia_ray.batch import Generation, TrainBatch
from aletheia_ray.data.records import VerifierList
from aletheia_ray.data.synthetic import synthetic_user_message
from aletheia_ray.prompts import THINK_CLOSE, build_messages, format_verdict, prompt_token_ids


def verifier_prompt_ids(lst: VerifierList, tokenizer: Any, *, style: str, synthetic: bool) -> list[int]:
    """Chat-template token ids of one listwise prompt (the synthetic task has its own short turn)."""
    messages = ([{"role": "user", "content": synthetic_user_message(lst)}] if synthetic
                else build_messages(lst, style=style, mode="list"))
    return prompt_token_ids(tokenizer, messages)


def verdict_completion(letter: str, style: str, reasoning: str = "") -> str:
    """A correctly formatted listwise answer (cold-start target): think closes </think> first."""
    if style == "think":
        return f"{reasoning.strip()}\n{THINK_CLOSE}\n\n{format_verdict(letter)}"
    return f"{reasoning.strip()} {format_verdict(letter)}".strip()


def _pad(rows: Sequence[Sequence[float]], length: int, value: float, dtype) -> torch.Tensor:
    return torch.tensor([list(r) + [value] * (length - len(r)) for r in rows], dtype=dtype)


def sequences_to_batch(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], *, pad_id: int,
                       advantages: Sequence[float] | torch.Tensor | None = None,
                       rollout_logprobs: Sequence[Sequence[float]] | None = None) -> TrainBatch:
    """Right-padded prompt+response rows; loss on response tokens only."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    for i, (p, r) in enumerate(zip(prompts, responses)):
        if not p or not r:
            raise ValueError(f"row {i}: empty {'prompt' if not p else 'response'} (no tokens to train on)")
    full = [list(p) + list(r) for p, r in zip(prompts, responses)]
    length = max(map(len, full))
    input_ids = _pad(full, length, pad_id, torch.long)
    attention_mask = _pad([[1] * len(f) for f in full], length, 0, torch.long)
    mask_rows, lp_rows = [], []
    for i, (p, r) in enumerate(zip(prompts, responses)):
        mask_rows.append([0.0] * (len(p) - 1) + [1.0] * len(r))
        if rollout_logprobs is not None:
            if len(rollout_logprobs[i]) != len(r):
                raise ValueError(f"row {i}: {len(rollout_logprobs[i])} rollout logprobs for {len(r)} tokens")
            lp_rows.append([0.0] * (len(p) - 1) + list(rollout_logprobs[i]))
    loss_mask = _pad(mask_rows, length - 1, 0.0, torch.float32)
    adv = torch.zeros(len(full)) if advantages is None else torch.as_tensor(advantages, dtype=torch.float32)
    rollout = _pad(lp_rows, length - 1, 0.0, torch.float32) if rollout_logprobs is not None else None
    return TrainBatch(input_ids=input_ids, attention_mask=attention_mask, loss_mask=loss_mask,
                      advantages=adv, rollout_logprobs=rollout)


def generations_to_batch(gens: Sequence[Generation], advantages: torch.Tensor, *, pad_id: int) -> TrainBatch:
    return sequences_to_batch([g.prompt_ids for g in gens], [g.response_ids for g in gens], pad_id=pad_id,
                              advantages=advantages, rollout_logprobs=[g.rollout_logprobs for g in gens])


def response_metrics(gens: Sequence[Generation]) -> dict[str, float]:
    lengths = [len(g.response_ids) for g in gens]
    return {
        "response_length/mean": sum(lengths) / len(lengths),
        "response_length/max": float(max(lengths)),
        "response_length/min": float(min(lengths)),
        "response_length/clip_ratio": sum(g.finish_reason == "length" for g in gens) / len(gens),
        "prompt_length/mean": sum(len(g.prompt_ids) for g in gens) / len(gens),
    }


def logprob_gap_metrics(trainer_lp: torch.Tensor, rollout_lp: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """How far the engine's sampling logprobs are from the trainer's (should be ~0 on-policy in fp32)."""
    n = float(mask.sum())
    diff = (trainer_lp - rollout_lp) * mask
    return {"rollout/logprob_abs_diff_mean": float(diff.abs().sum() / n),
            "rollout/logprob_abs_diff_max": float(diff.abs().max()),
            "rollout/kl_k1": float((rollout_lp - trainer_lp).mul(mask).sum() / n)}


def minibatch_rows(prompt_indices: Sequence[int], num_minibatches: int, rng: random.Random) -> list[list[int]]:
    """Rows of a generated batch split into ``num_minibatches`` disjoint mini-batches of whole
    prompt groups (a group's advantages are relative to each other), groups in a random order;
    group counts differ by at most one. Every row is in exactly one mini-batch."""
    groups: dict[int, list[int]] = {}
    for row, prompt in enumerate(prompt_indices):
        groups.setdefault(prompt, []).append(row)
    if len(groups) < num_minibatches:
        raise ValueError(f"algorithm.updates_per_generation={num_minibatches} needs at least as many prompts per "
                         f"step, got {len(groups)} (algorithm.prompts_per_step)")
    order = sorted(groups)
    rng.shuffle(order)
    base, extra = divmod(len(order), num_minibatches)
    out, start = [], 0
    for k in range(num_minibatches):
        end = start + base + (1 if k < extra else 0)
        out.append([row for prompt in order[start:end] for row in groups[prompt]])
        start = end
    return out


def mean_update_metrics(per_update: Sequence[dict[str, float]]) -> dict[str, float]:
    """Learner metrics of several updates from one generated batch: the mean of each, plus
    ``actor/num_updates``."""
    keys = per_update[0].keys()
    out = {k: sum(m[k] for m in per_update) / len(per_update) for k in keys}
    out["actor/num_updates"] = float(len(per_update))
    return out
