"""Learning-rate schedules (multipliers for ``torch.optim.lr_scheduler.LambdaLR``)."""
from __future__ import annotations

import math

import torch


def constant_with_warmup(warmup_steps: int):
    """Linear warm-up over ``warmup_steps`` optimizer steps, then constant (the paper's schedule).

    Step k (0-based) uses lr * min(1, (k + 1) / warmup_steps): unlike a ramp starting at 0, the
    first update is not wasted at lr 0.
    """
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")

    def multiplier(step: int) -> float:
        return 1.0 if warmup_steps == 0 else min(1.0, (step + 1) / warmup_steps)

    return multiplier


def warmup_steps(total_updates: int, warmup_ratio: float) -> int:
    """Warm-up length, the one place it is computed: ceil(ratio x every optimizer update of the run),
    e.g. the paper's 5% of 500 updates = 25 (``TrainConfig.warmup_steps``)."""
    return math.ceil(total_updates * warmup_ratio - 1e-9)


def constant_with_warmup_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, constant_with_warmup(warmup_steps))
