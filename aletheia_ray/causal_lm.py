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


def batch_logprobs(model, batch: TrainBatch, *, micro_batch_size: int, max_tokens: Optional[int] = None,
                   temperature: float = 1.0, chunk_tokens: int = 1024, scored: Scored = "all",
                   num_micro_batches: Optional[int] = None) -> torch.Tensor:
    """[B, T-1] float32 CPU logprobs without gradients, zeros off the scored positions.

    Each micro-batch goes to the model's device (``TrainBatch.to``) and back. ``num_micro_batches``
    (ZeRO-3: every forward is a collective, so all ranks must run as many) repeats the last
    micro-batch, discarding the result, until that many forwards ran."""
    device = model_device(model)
    forwards = 0

    def score(mb: TrainBatch) -> torch.Tensor:
        nonlocal forwards
        forwards += 1
        mb = mb.to(device)
        logprobs, _ = scored_logprobs(model, mb.input_ids, mb.attention_mask, scored_mask(mb, scored),
                                      temperature=temperature, chunk_tokens=chunk_tokens)
        return logprobs

    with torch.no_grad():
        out = gather_rows(batch, micro_batch_size, max_tokens, score)
        if num_micro_batches is not None and forwards < num_micro_batches:
            *_, (_, last) = micro_batches(batch, micro_batch_size, max_tokens)
            for _ in range(num_micro_batches - forwards):
                score(last)
    return out
