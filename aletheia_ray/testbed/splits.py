"""Contamination-free splits (paper Sec. 3).

Problems are partitioned once, by seed: a fraction ``eval_problem_fraction`` becomes evaluation
problems, the rest training problems. Train = Weak-Easy lists on training problems; Heldout =
Weak-Easy, Strong = Strong-Easy, Hard = Weak-Hard lists on evaluation problems (the Adv split is
made from Heldout). Each split is subsampled to its target size evenly over (list length,
language) and, inside each of those groups, round-robin over problems for diversity. The result is
even only when the target size is below what the smaller groups can fill: a split that takes the
whole pool keeps the pool's proportions, unless ``splits.balance: exact``, which cuts every
(length, language) group of an evaluation split to the smallest group's size first.
``splits.max_per_group`` caps every (length, language) group of an evaluation split (the authors'
release code: 250 per group, at most 3,000 lists per evaluation split).
"""
from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import replace
from typing import Iterable, Optional

from aletheia_ray.data.records import VerifierList
from aletheia_ray.testbed.config import SplitsConfig

EVAL_SPLITS = ("heldout", "strong", "hard", "adv")
SPLIT_SOURCES = {  # split -> (tier, bucket, problem side)
    "train": ("weak", "easy", "train"),
    "heldout": ("weak", "easy", "eval"),
    "strong": ("strong", "easy", "eval"),
    "hard": ("weak", "hard", "eval"),
}


def partition_problems(problem_ids: Iterable[str], fraction: float, seed: int) -> tuple[set[str], set[str]]:
    ids = sorted(set(problem_ids))
    random.Random(f"{seed}:partition").shuffle(ids)
    n_eval = min(len(ids) - 1, max(1, round(fraction * len(ids)))) if len(ids) > 1 else len(ids)
    return set(ids[n_eval:]), set(ids[:n_eval])


def _round_robin(groups: list[list]) -> list:
    out, k = [], 0
    while any(k < len(g) for g in groups):
        out.extend(g[k] for g in groups if k < len(g))
        k += 1
    return out


def balanced_sample(lists: list[VerifierList], size: int, rng: random.Random, exact: bool = False,
                    cap: Optional[int] = None) -> list[VerifierList]:
    """Up to ``size`` lists, even over (num_candidates, language), problems spread round-robin;
    ``exact``: at most the smallest group's size from every group; ``cap``: at most ``cap`` from any
    group (the authors' release code takes up to 250 per group)."""
    by_key: dict[tuple, dict[str, list[VerifierList]]] = defaultdict(lambda: defaultdict(list))
    for lst in lists:
        by_key[(lst.num_candidates, lst.language)][lst.prompt_id].append(lst)
    ordered_groups = []
    for key in sorted(by_key):
        per_problem = [sorted(v, key=lambda x: x.idx) for _, v in sorted(by_key[key].items())]
        for v in per_problem:
            rng.shuffle(v)
        rng.shuffle(per_problem)
        ordered_groups.append(_round_robin(per_problem))
    if exact and ordered_groups:
        smallest = min(len(g) for g in ordered_groups)
        ordered_groups = [g[:smallest] for g in ordered_groups]
    if cap is not None:
        ordered_groups = [g[:cap] for g in ordered_groups]
    return _round_robin(ordered_groups)[:size]


def make_splits(lists: list[VerifierList], cfg: SplitsConfig, seed: int) -> tuple[dict[str, list[VerifierList]], dict]:
    """Train/Heldout/Strong/Hard lists with final ``idx`` (``{split}-{n}``) and the problem partition."""
    train_ids, eval_ids = partition_problems((l.prompt_id for l in lists), cfg.eval_problem_fraction, seed)
    sizes = {"train": cfg.train_size, "heldout": cfg.heldout_size, "strong": cfg.strong_size, "hard": cfg.hard_size}
    splits: dict[str, list[VerifierList]] = {}
    for name, (tier, bucket, side) in SPLIT_SOURCES.items():
        allowed = train_ids if side == "train" else eval_ids
        pool = [l for l in lists if l.weak_strong == tier and l.easy_hard == bucket and l.prompt_id in allowed]
        rng = random.Random(f"{seed}:split:{name}")
        chosen = balanced_sample(pool, sizes[name], rng, exact=cfg.balance == "exact" and side == "eval",
                                 cap=cfg.max_per_group if side == "eval" else None)
        rng.shuffle(chosen)
        splits[name] = [replace(l, idx=f"{name}-{n}", extra={**l.extra, "build_key": l.idx})
                        for n, l in enumerate(chosen)]
    partition = {"train_problems": len(train_ids), "eval_problems": len(eval_ids)}
    return splits, partition


def contamination(splits: dict[str, list[VerifierList]]) -> dict[str, list[str]]:
    """Problem ids shared by Train and each evaluation split (all empty when clean)."""
    train = {l.prompt_id for l in splits.get("train", [])}
    return {name: sorted(train & {l.prompt_id for l in splits[name]}) for name in EVAL_SPLITS if name in splits}


def length_language_counts(lists: list[VerifierList]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for l in lists:
        counts[f"{l.num_candidates}/{l.language}"] += 1
    return dict(sorted(counts.items()))


def evenness(lists: list[VerifierList]) -> float:
    """max/min count over (length, language) cells present; 1.0 is perfectly even."""
    counts = list(length_language_counts(lists).values())
    return max(counts) / min(counts) if counts else math.nan
