"""A synthetic verifier task a tiny model can learn in minutes (the learning test's data).

Each list asks for the candidate that prints its own letter: the correct candidate (label ``B``)
is ``print("B", "B", ...)`` (its letter ``repeats`` times); every other one prints a letter that
labels no candidate (``print("X", "X", ...)``, from V-Z). The answer position is uniform, so a
model that does not read the candidates scores chance (1/k); one that finds the label repeated
inside a program scores 1. Prompts are under ~80 tokens.

Why this property: it needs no position binding (the right letter is the label that also occurs
in a program), so a 2-layer random-init model learns it by reinforcement within tens of steps.
Scratch measurement (HF model, letter-token GRPO, 32 prompts x 8 samples, lr 3e-3, after a
format-only cold start): ``repeats=6`` went from chance to 0.96 reward by step 30, ``repeats=3``
to 0.88 by step 50, ``repeats=1`` was still at chance after 60; "the candidate that adds"
(``x+3`` vs ``x-3``) needs a previous-token circuit and plateaued at chance even with
supervised labels for 60+ steps.

Records are ordinary ``VerifierList`` rows (pass rate 1.0 for the correct one, 0.0 otherwise),
so the same reward functions, metrics and loaders apply unchanged.
"""
from __future__ import annotations

import random
from typing import Sequence

from aletheia_ray.data.records import LETTERS, MAX_CANDIDATES, MIN_CANDIDATES, VerifierList

QUERY = "Which candidate prints its own letter?"
OTHER_LETTERS = "VWXYZ"  # printed by the wrong candidates: never a candidate label (A-E)


def make_synthetic_lists(num_lists: int, *, num_candidates: Sequence[int] = (2,), seed: int = 0,
                         repeats: int = 6, idx_prefix: str = "syn") -> list[VerifierList]:
    """``num_lists`` lists; each draws its size from ``num_candidates`` and its answer uniformly.

    Deterministic for a seed; different seeds (e.g. train vs held-out) give independent lists.
    """
    sizes = list(num_candidates)
    if num_lists < 1:
        raise ValueError(f"synthetic num_lists must be >= 1, got {num_lists}")
    if not sizes or any(not MIN_CANDIDATES <= k <= MAX_CANDIDATES for k in sizes):
        raise ValueError(f"synthetic num_candidates must be values in {MIN_CANDIDATES}-{MAX_CANDIDATES}, "
                         f"got {sizes}")
    if repeats < 1:
        raise ValueError(f"synthetic repeats must be >= 1, got {repeats}")
    rng = random.Random(seed)
    lists = []
    for i in range(num_lists):
        k = rng.choice(sizes)
        pos = rng.randrange(k)
        shown = [LETTERS[c] if c == pos else rng.choice(OTHER_LETTERS) for c in range(k)]
        candidates = ["print(" + ", ".join([f'"{x}"'] * repeats) + ")" for x in shown]
        lists.append(VerifierList(
            idx=f"{idx_prefix}-{seed}-{i}", query=QUERY, candidates=candidates,
            pass_rates=[1.0 if c == pos else 0.0 for c in range(k)], chosen_position=pos,
            chosen_answer=LETTERS[pos], language="python", prompt_id=f"{idx_prefix}-{seed}-{i}",
            generator="synthetic", num_candidates=k, source="synthetic"))
    return lists


def synthetic_user_message(lst: VerifierList) -> str:
    """The short user turn: the question, one ``X: program`` line per candidate."""
    lines = [lst.query] + [f"{LETTERS[i]}: {c}" for i, c in enumerate(lst.candidates)]
    return "\n".join(lines)


def random_chance_list_acc(lists: Sequence[VerifierList]) -> float:
    """Expected ListAcc of a uniform random guesser on these lists (mean of 1/k)."""
    return sum(1.0 / len(lst.candidates) for lst in lists) / len(lists)
