"""Verifier task, pairwise (``data.kind: pairs``): two candidates of a list per prompt, ``\\boxed{A}``
for the one with the higher pass rate (PairEM) or, with ``reward.fn: pair_sc``, their two 0-10
scores ``\\boxed{[10, 4]}`` (PairSc, targets round(10 x pass rate)).

Which pairs: every ordered pair of each list, i.e. both (i, j) and (j, i). Each candidate pair is
then shown in both orders, so the right answer is A and B equally often and a position bias earns
nothing; the prompt sampler mixes them like any other item. Held-out pairs (``evaluation.data_path``)
are made the same way: ``eval/pair_acc`` is the share of samples that pick the higher pass rate.
PairEM needs distinct pass rates within each pair: lists holding an equal pair are an error naming
them (``validate_pair_em_lists``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aletheia_ray.data.records import VerifierList
from aletheia_ray.prompts import MAX_SCORE
from aletheia_ray.rewards import validate_pair_em_lists
from aletheia_ray.tasks.verifier_lists import VerifierListsTask, verifier_prompt_ids


@dataclass(frozen=True)
class VerifierPair:
    """Candidates ``pair[0]`` (shown as A) and ``pair[1]`` (B) of ``lst``."""
    lst: VerifierList
    pair: tuple[int, int]

    @property
    def idx(self) -> str:
        return f"{self.lst.idx}:{self.pair[0]}-{self.pair[1]}"

    @property
    def candidates(self) -> list[str]:  # the list's: data.num_candidates filters lists, not pairs
        return self.lst.candidates


def ordered_pairs(lst: VerifierList) -> list[VerifierPair]:
    n = len(lst.candidates)
    return [VerifierPair(lst, (i, j)) for i in range(n) for j in range(n) if i != j]


class VerifierPairsTask(VerifierListsTask):
    name = "pairs"
    reward_fns = ("pair_em", "pair_sc")  # the prompt follows the reward (PROMPT_MODES)
    cold_start_targets = ("correct", "random_letter")
    item_noun = "pairs"

    eval_accuracy_key = "eval/pair_acc"  # every sample of a held-out pair, either order (unparsed = wrong)

    def items_from(self, cfg: Any, path: str, key: str) -> list[VerifierPair]:
        lists = super().items_from(cfg, path, key)
        if self.reward_fn(cfg) == "pair_em":  # PairSc scores equal pass rates fine; PairEM has no answer there
            validate_pair_em_lists(lists)
        return [p for lst in lists for p in ordered_pairs(lst)]

    def prompt_ids(self, item: VerifierPair, tokenizer: Any, style: str, mode: str = "pair") -> list[int]:
        return verifier_prompt_ids(item.lst, tokenizer, style=style, mode=mode, pair=item.pair)

    def reward_item(self, item: VerifierPair) -> tuple[VerifierList, tuple[int, int]]:
        return item.lst, item.pair

    def answer_letter(self, item: VerifierPair) -> str:
        i, j = item.pair
        return "A" if item.lst.pass_rates[i] > item.lst.pass_rates[j] else "B"

    def answer_scores(self, item: VerifierPair) -> list[int]:
        return [round(item.lst.pass_rates[k] * MAX_SCORE) for k in item.pair]  # PairSc's targets

    def shown_candidates(self, item: VerifierPair) -> list:
        return list(item.pair)

    def random_baseline(self, items) -> float:
        return 0.5
