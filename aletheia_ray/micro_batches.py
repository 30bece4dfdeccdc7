"""How a batch is split: over ranks, engines and reward actors (``near_equal_bounds``), into
mini-batches of whole prompt groups (``minibatch_rows``), and a rank's rows into micro-batches:
a row cap, or a token budget with rows grouped by length.

With ``max_tokens=None`` a micro-batch is ``max_rows`` consecutive rows (padded to the longest row
of the whole batch, as before). With a token budget, rows are sorted by length (longest first) and
packed greedily while ``rows x longest row`` stays within ``max_tokens`` (and rows within
``max_rows``); each micro-batch is then trimmed to its own longest row, so padding is paid per
micro-batch, not per batch. A row longer than the budget gets a micro-batch of its own (the config
keeps ``max_tokens >= model.max_model_len`` so that never happens in training).

Loss normalisation is unaffected: every loss divides by the GLOBAL token (or sequence) count that
the learner group passes in, so any partition of the rows gives the same loss and gradient.
"""
from __future__ import annotations

import random
from typing import Callable, Iterator, Optional, Sequence

import torch

from aletheia_ray.batch import TrainBatch


def near_equal_bounds(num_items: int, num_parts: int) -> list[tuple[int, int]]:
    """[start, end) of ``num_parts`` contiguous parts of ``num_items`` whose sizes differ by at most
    one, larger parts first (rows over learner ranks, prompts over engines, samples over actors)."""
    if num_parts < 1:
        raise ValueError(f"cannot split into {num_parts} parts")
    base, extra = divmod(num_items, num_parts)
    bounds, start = [], 0
    for k in range(num_parts):
        end = start + base + (1 if k < extra else 0)
        bounds.append((start, end))
        start = end
    return bounds


def plan_micro_batches(lengths: list[int], max_rows: int, max_tokens: Optional[int] = None,
                       rows_per_unit: int = 1) -> list[list[int]]:
    """Row indices of each micro-batch; every row in exactly one. ``rows_per_unit`` > 1 keeps units
    of that many consecutive rows together and in order (DPO: a chosen row and its rejected row):
    the row cap is rounded down to whole units (at least one), a unit costs its longest row."""
    if max_rows < 1:
        raise ValueError(f"micro-batch row cap must be >= 1, got {max_rows}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens_per_micro_batch must be >= 1, got {max_tokens}")
    unit = rows_per_unit
    if unit < 1 or len(lengths) % unit:
        raise ValueError(f"{len(lengths)} rows cannot be split into units of {unit} rows")
    unit_lengths = [max(lengths[u * unit:(u + 1) * unit]) for u in range(len(lengths) // unit)]
    max_units = max(1, max_rows // unit)
    if max_tokens is None:
        units = [list(range(s, min(s + max_units, len(unit_lengths)))) for s in range(0, len(unit_lengths), max_units)]
    else:
        order = sorted(range(len(unit_lengths)), key=lambda u: (-unit_lengths[u], u))
        units = []
        for u in order:  # longest first: a micro-batch's first unit is its longest
            current = units[-1] if units else None
            if (current and len(current) < max_units
                    and (len(current) + 1) * unit * unit_lengths[current[0]] <= max_tokens):
                current.append(u)
            else:
                units.append([u])
    return [[u * unit + k for u in group for k in range(unit)] for group in units]


def micro_batches(batch: TrainBatch, max_rows: int, max_tokens: Optional[int] = None, rows_per_unit: int = 1
                  ) -> Iterator[tuple[list[int], TrainBatch]]:
    """``(rows, micro_batch)`` pairs; a token-budget micro-batch is trimmed to its longest row."""
    for rows in plan_micro_batches(batch.row_lengths(), max_rows, max_tokens, rows_per_unit):
        if max_tokens is None:
            yield rows, batch.slice(rows[0], rows[-1] + 1)
        else:
            yield rows, batch.select(rows).trim_padding()


def gather_rows(batch: TrainBatch, max_rows: int, max_tokens: Optional[int],
                fn: Callable[[TrainBatch], torch.Tensor]) -> torch.Tensor:
    """Run ``fn`` ([n, L-1] per-token values of a micro-batch) over the micro-batches and put the
    results back at their rows in a [B, T-1] float32 CPU tensor (zeros past each row's end)."""
    out = torch.zeros(batch.input_ids.shape[0], batch.input_ids.shape[1] - 1, dtype=torch.float32)
    for rows, mb in micro_batches(batch, max_rows, max_tokens):
        values = fn(mb).float().cpu()
        out[torch.as_tensor(rows), : values.shape[1]] = values
    return out


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
    return [[row for prompt in order[start:end] for row in groups[prompt]]
            for start, end in near_equal_bounds(len(order), num_minibatches)]
