"""Prompt order for training: a seeded permutation per epoch, consumed in fixed-size batches.

Batches run across epoch boundaries (the tail of epoch e followed by the head of e+1), so every
step has exactly ``batch_size`` prompts and the stopping rule is a step count, never "the epoch
ran out". The whole state is ``(epoch, position)``: the order of epoch e is a pure function of
``(seed, e)``, so resume reproduces it exactly, including at an epoch boundary.
"""
from __future__ import annotations

from typing import Any

import numpy as np


class PromptSampler:
    def __init__(self, num_items: int, batch_size: int, *, seed: int = 0, shuffle: bool = True):
        if num_items < 1:
            raise ValueError(f"PromptSampler needs at least one item, got {num_items}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.num_items, self.batch_size, self.seed, self.shuffle = num_items, batch_size, seed, shuffle
        self.epoch, self.position = 0, 0

    def order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.num_items)
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_items)

    def next_batch(self) -> list[int]:
        out: list[int] = []
        while len(out) < self.batch_size:
            if self.position >= self.num_items:
                self.epoch, self.position = self.epoch + 1, 0
            take = min(self.batch_size - len(out), self.num_items - self.position)
            out.extend(int(i) for i in self.order(self.epoch)[self.position:self.position + take])
            self.position += take
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "num_items": self.num_items,
                "batch_size": self.batch_size, "seed": self.seed, "shuffle": self.shuffle}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("num_items", "seed", "shuffle"):
            if state[key] != getattr(self, key):
                raise ValueError(f"cannot resume: sampler {key} was {state[key]!r} in the checkpoint, "
                                 f"now {getattr(self, key)!r} (did the data or seed change?)")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
