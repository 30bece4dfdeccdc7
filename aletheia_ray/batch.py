"""The data that flows between pipeline stages.

prompts -> rollout (``Generation`` per sample) -> reward (``reward`` filled) -> reference/old
logprobs -> advantages -> learner (``TrainBatch``: padded tensors). Pure data: no Ray here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch


@dataclass
class Generation:
    """One sampled response to one prompt, as the rollout engine produced it."""

    prompt_index: int  # which prompt of the step (samples of one prompt form a GRPO group)
    prompt_ids: list[int]
    response_ids: list[int]
    text: str
    finish_reason: str  # "stop" | "length"
    rollout_logprobs: list[float]  # engine's per-token sampling logprobs (post-temperature)
    reward: Optional[float] = None
    meta: dict[str, Any] = field(default_factory=dict)  # idx, parsed verdict, parse ok, ...


@dataclass
class TrainBatch:
    """Right-padded token sequences (prompt + response) with per-token response quantities.

    All per-token tensors are aligned with ``input_ids[:, 1:]`` (the token being predicted), so
    ``logprobs[b, t]`` is log p(input_ids[b, t+1] | input_ids[b, :t+1]).
    """

    input_ids: torch.Tensor  # [B, T] long
    attention_mask: torch.Tensor  # [B, T] long/bool
    loss_mask: torch.Tensor  # [B, T-1] float: 1 on response tokens
    advantages: torch.Tensor  # [B] or [B, T-1] float
    old_logprobs: Optional[torch.Tensor] = None  # [B, T-1] from the learner before the update
    ref_logprobs: Optional[torch.Tensor] = None  # [B, T-1] from the reference actor
    rollout_logprobs: Optional[torch.Tensor] = None  # [B, T-1] from the rollout engine (TIS)
    ref_sequence_logprobs: Optional[torch.Tensor] = None  # [B] precomputed reference sums over the response (DPO)

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def slice(self, start: int, end: int) -> "TrainBatch":
        def cut(t):
            return None if t is None else t[start:end]

        return TrainBatch(**{k: cut(v) for k, v in self.__dict__.items()})

    def select(self, rows: list[int]) -> "TrainBatch":
        """The given rows, in the given order (e.g. one mini-batch of whole prompt groups)."""
        index = torch.as_tensor(rows, dtype=torch.long)
        return TrainBatch(**{k: None if v is None else v.index_select(0, index) for k, v in self.__dict__.items()})

    def row_lengths(self) -> list[int]:
        """Real (unpadded) tokens per row."""
        return [int(n) for n in self.attention_mask.sum(-1).tolist()]

    def trim_padding(self) -> "TrainBatch":
        """Drop the trailing columns that are padding in every row (right padding: exact)."""
        length = max(self.row_lengths(), default=0)
        if length >= self.input_ids.shape[1]:
            return self
        out = {}
        for key, value in self.__dict__.items():
            if value is None or value.dim() == 1:  # per-row tensors ([B] advantages) have no columns
                out[key] = value
            else:
                out[key] = value[:, : length if key in _FULL_LENGTH else length - 1]
        return TrainBatch(**out)

    def to(self, device: torch.device | str) -> "TrainBatch":
        """THE way a batch reaches a model: every tensor moved to ``device`` (the device of the
        model's parameters, ``aletheia_ray.device.model_device``)."""
        return TrainBatch(**{k: None if v is None else v.to(device) for k, v in self.__dict__.items()})


_FULL_LENGTH = ("input_ids", "attention_mask")  # [B, T]; every other per-token tensor is [B, T-1]


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
