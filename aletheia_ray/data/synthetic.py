"""A synthetic verifier task a tiny model can learn in minutes (the learning test's data).

Each list asks for the candidate that *adds* a number; exactly one candidate is ``x+N``, the others
apply a different operator to the same N (``x-N``, ``x*N``, ...). The answer position is uniform,
so a model that does not read the candidates scores chance (1/k); a model that finds the ``+``
scores 1. Prompts are a few dozen characters, so the whole task fits a tiny context.

Records are ordinary ``VerifierList`` rows (pass rate 1.0 for the adder, 0.0 otherwise), so the
same reward functions, metrics and loaders apply unchanged.
"""
from __future__ import annotations

import random
from typing import Sequence

from aletheia_ray.data.records import LETTERS, MAX_CANDIDATES, MIN_CANDIDATES, VerifierList

QUERY = "Which candidate adds?"
CORRECT_OP = "+"
WRONG_OPS = ("-", "*", "/", "%")  # MAX_CANDIDATES - 1 distractors, each used at most once per list


def make_synthetic_lists(num_lists: int, *, num_candidates: Sequence[int] = (2,), seed: int = 0,
                         idx_prefix: str = "syn") -> list[VerifierList]:
    """``num_lists`` lists; each draws its size from ``num_candidates`` and its answer uniformly.

    Deterministic for a seed; different seeds (e.g. train vs held-out) give independent lists.
    """
    sizes = list(num_candidates)
    if num_lists < 1:
        raise ValueError(f"synthetic num_lists must be >= 1, got {num_lists}")
    if not sizes or any(not MIN_CANDIDATES <= k <= MAX_CANDIDATES for k in sizes):
        raise ValueError(f"synthetic num_candidates must be values in {MIN_CANDIDATES}-{MAX_CANDIDATES}, "
                         f"got {sizes}")
    rng = random.Random(seed)
    lists = []
    for i in range(num_lists):
        k = rng.choice(sizes)
        n = rng.randint(1, 9)
        pos = rng.randrange(k)
        ops = list(WRONG_OPS)
        rng.shuffle(ops)
        candidates, wrong = [], iter(ops)
        for c in range(k):
            candidates.append(f"x{CORRECT_OP if c == pos else next(wrong)}{n}")
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
