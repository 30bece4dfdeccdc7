"""The policy/reference model as the learner ranks and the reference actor use it: loading, and
the no-gradient logprob pass over a batch (micro-batched, chunked over positions, on the model's
device). No Ray here: both actor roles call these functions.
"""
from __future__ import annotations

import os
from typing import Literal, Optional

import torch

from aletheia_ray.algorithms.logprobs import scored_logprobs
from aletheia_ray.batch import TrainBatch
from aletheia_ray.device import model_device
from aletheia_ray.micro_batches import gather_rows, micro_batches

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
ATTN_IMPLEMENTATIONS = ("sdpa", "flash_attention_2", "eager")
Scored = Literal["all", "response"]


def load_causal_lm(model_path: str, dtype: str, attn_implementation: str) -> torch.nn.Module:
    """A HF causal LM in eval mode (dropout off: RL logprobs must not depend on dropout noise)."""
    from transformers import AutoModelForCausalLM

    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(DTYPES)}")
    if not os.path.isdir(model_path):
        raise FileNotFoundError(f"model directory {model_path!r} does not exist")
    model = AutoModelForCausalLM.from_pretrained(
        model_path, dtype=DTYPES[dtype], attn_implementation=attn_implementation
    )
    return model.eval()


def scored_mask(batch: TrainBatch, scored: Scored) -> torch.Tensor:
    """Positions to score: every real token ("all") or the response tokens of the loss ("response")."""
    if scored == "response":
        return batch.loss_mask
    if scored == "all":
        return batch.attention_mask[:, 1:]
    raise ValueError(f"scored must be 'all' or 'response', got {scored!r}")


def head_calls_per_micro_batch(shards: list[TrainBatch], *, micro_batch_size: int, max_tokens: Optional[int],
                               scored: Scored, chunk_tokens: int, rows_per_unit: int = 1) -> list[int]:
    """ZeRO-3 plan: every forward and every output-head call gathers parameters, a collective all
    ranks must make equally often. Every rank runs as many micro-batches as the longest plan (a
    shard with fewer repeats its last, weight 0); at micro-batch ``i`` each makes the most head
    calls any rank's micro-batch ``i`` needs. ``len(result)`` = micro-batches per rank."""
    per_shard = []
    for shard in shards:
        per_shard.append([-(-int(scored_mask(mb, scored).sum()) // chunk_tokens)
                          for _, mb in micro_batches(shard, micro_batch_size, max_tokens, rows_per_unit)])
    longest = max(len(calls) for calls in per_shard)
    return [max(calls[min(i, len(calls) - 1)] for calls in per_shard) for i in range(longest)]


def batch_logprobs(model, batch: TrainBatch, *, micro_batch_size: int, max_tokens: Optional[int] = None,
                   temperature: float = 1.0, chunk_tokens: int = 1024, scored: Scored = "all",
                   head_calls: Optional[list[int]] = None) -> torch.Tensor:
    """[B, T-1] float32 CPU logprobs without gradients, zeros off the scored positions.

    Each micro-batch goes to the model's device (``TrainBatch.to``) and back. ``head_calls``
    (ZeRO-3, ``head_calls_per_micro_batch``) fixes the output-head calls of each forward and the
    number of forwards: the last micro-batch is repeated, its result discarded, until that many ran."""
    device = model_device(model)
    forwards = 0

    def score(mb: TrainBatch) -> torch.Tensor:
        nonlocal forwards
        num_chunks = head_calls[forwards] if head_calls is not None else None
        forwards += 1
        mb = mb.to(device)
        logprobs, _ = scored_logprobs(model, mb.input_ids, mb.attention_mask, scored_mask(mb, scored),
                                      temperature=temperature, chunk_tokens=chunk_tokens, num_chunks=num_chunks)
        return logprobs

    with torch.no_grad():
        out = gather_rows(batch, micro_batch_size, max_tokens, score)
        if head_calls is not None and forwards < len(head_calls):
            *_, (_, last) = micro_batches(batch, micro_batch_size, max_tokens)
            while forwards < len(head_calls):
                score(last)
    return out
