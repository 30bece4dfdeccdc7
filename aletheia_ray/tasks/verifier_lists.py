"""Verifier tasks, listwise: a problem and 2-5 candidates in one prompt, answered ``\\boxed{B}``
(ListEM) or, with ``reward.fn: list_sc``, with one 0-10 score per candidate ``\\boxed{[3, 10, 5]}``
(ListSc, the score prompt of ``prompts.py`` mode ``list_score``).

``data.kind: lists`` reads verifier lists (JSONL/parquet, ``aletheia_ray.data.lists``);
``data.kind: synthetic`` makes learnable toy lists in memory (``aletheia_ray.data.synthetic``) and
has a held-out set of its own (lists of another seed); every task here also evaluates on the lists
of ``evaluation.data_path`` (``heldout``).

Cold-start targets: ``correct`` is the right answer in the reward's format (the chosen letter;
scores round(10 x pass rate) with the correct candidate alone at 10, which is what ListSc pays
most for); ``random_letter`` is a random answer in that format (a letter, or random scores).
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Optional, Sequence

from aletheia_ray.data.lists import load_lists
from aletheia_ray.data.records import LETTERS, VerifierList
from aletheia_ray.eval_schedule import verdict_eval_metrics
from aletheia_ray.data.synthetic import make_synthetic_lists, synthetic_user_message
from aletheia_ray.prompts import MAX_SCORE, MIN_SCORE, THINK_CLOSE, build_messages, format_scores, format_verdict, \
    prompt_token_ids
from aletheia_ray.tasks.base import Task, TaskData, prompt_budget, select_items

PROMPT_MODES = {"list_em": "list", "list_sc": "list_score", "pair_em": "pair", "pair_sc": "pair_score"}


def verifier_prompt_ids(lst: VerifierList, tokenizer: Any, *, style: str, synthetic: bool = False,
                        mode: str = "list", pair: Optional[tuple[int, int]] = None) -> list[int]:
    """Chat-template token ids of one verification prompt (the synthetic task has its own short turn)."""
    messages = ([{"role": "user", "content": synthetic_user_message(lst)}] if synthetic
                else build_messages(lst, style=style, mode=mode, pair=pair))
    return prompt_token_ids(tokenizer, messages)


def verdict_completion(letter: str, style: str, reasoning: str = "") -> str:
    """A correctly formatted verdict (cold-start target): think closes </think> first."""
    return answer_completion(format_verdict(letter), style, reasoning)


def answer_completion(answer: str, style: str, reasoning: str = "") -> str:
    """A formatted answer (``\\boxed{...}``) after the reasoning; think closes </think> first."""
    if style == "think":
        return f"{reasoning.strip()}\n{THINK_CLOSE}\n\n{answer}"
    return f"{reasoning.strip()} {answer}".strip()


class VerifierListsTask(Task):
    name = "lists"
    reward_fns = ("list_em", "list_sc")  # the prompt follows the reward (PROMPT_MODES)
    cold_start_targets = ("correct", "random_letter")

    def read_items(self, cfg: Any) -> list[VerifierList]:
        return self.items_from(cfg, cfg.data.train_path, "data.train_path")

    def items_from(self, cfg: Any, path: str, key: str) -> list:
        """The task's items of a lists file (``key``: the config key naming it, for errors)."""
        if not Path(path).exists():
            raise FileNotFoundError(f"{key}: file {path} not found")
        return load_lists(path)

    def heldout_items(self, cfg: Any) -> list:
        return self.items_from(cfg, cfg.evaluation.data_path, "evaluation.data_path")

    def heldout(self, cfg: Any, tokenizer: Any) -> Optional[TaskData]:
        """The held-out items (``evaluation.data_path``, or the task's own set), prompted and filtered
        like the training data (``data.num_candidates``, ``data.max_prompt_tokens``); the first
        ``evaluation.num_lists`` of them (``eval/dropped_num_lists`` counts the rest)."""
        d, e = cfg.data, cfg.evaluation
        items = self.heldout_items(cfg)
        mode = PROMPT_MODES[self.reward_fn(cfg)]
        ids = [self.prompt_ids(item, tokenizer, d.prompt_style, mode) for item in items]
        items, ids, report = select_items(items, ids, budget=prompt_budget(cfg), num_candidates=d.num_candidates,
                                          max_prompt_tokens=d.max_prompt_tokens,
                                          source=e.data_path or f"{self.name} held-out set")
        report["eval/dropped_num_lists"] = max(0, len(items) - e.num_lists)
        return TaskData(items[:e.num_lists], ids[:e.num_lists],
                        [self.reward_item(item) for item in items[:e.num_lists]], report)

    def heldout_metrics(self, items: Sequence[Any], gens: Sequence[Any], k: int) -> dict[str, float]:
        return verdict_eval_metrics(gens, [self.answer_letter(item) for item in items], k=k,
                                    accuracy_key=self.eval_accuracy_key, noun=self.item_noun,
                                    random_baseline=self.random_baseline(items))

    def prompt_ids(self, item: VerifierList, tokenizer: Any, style: str, mode: str = "list") -> list[int]:
        return verifier_prompt_ids(item, tokenizer, style=style, mode=mode)

    def load(self, cfg: Any, tokenizer: Any) -> TaskData:
        d = cfg.data
        items = self.read_items(cfg)
        mode = PROMPT_MODES[self.reward_fn(cfg)]
        ids = [self.prompt_ids(item, tokenizer, d.prompt_style, mode) for item in items]
        items, ids, report = select_items(items, ids, budget=prompt_budget(cfg), num_candidates=d.num_candidates,
                                          max_prompt_tokens=d.max_prompt_tokens, source=d.train_path or self.name)
        return TaskData(items, ids, [self.reward_item(item) for item in items], report)

    def reward_item(self, item: Any) -> Any:
        return item

    def answer_letter(self, item: Any) -> str:
        return item.chosen_answer

    def answer_scores(self, item: VerifierList) -> list[int]:
        """round(10 x pass rate), the chosen candidate alone at the top score."""
        return [MAX_SCORE if k == item.chosen_position else min(round(r * MAX_SCORE), MAX_SCORE - 1)
                for k, r in enumerate(item.pass_rates)]

    def cold_start_text(self, item: Any, targets: str, style: str, reasoning: str, rng: random.Random,
                        fn: Optional[str] = None) -> str:
        shown = len(self.shown_candidates(item))
        if PROMPT_MODES[fn or self.reward_fns[0]].endswith("_score"):
            scores = (self.answer_scores(item) if targets == "correct"
                      else [rng.randint(MIN_SCORE, MAX_SCORE) for _ in range(shown)])
            return answer_completion(format_scores(scores), style, reasoning)
        letter = self.answer_letter(item) if targets == "correct" else rng.choice(LETTERS[:shown])
        return verdict_completion(letter, style, reasoning)

    def shown_candidates(self, item: Any) -> list:
        return item.candidates


class SyntheticListsTask(VerifierListsTask):
    """Toy lists the random-init model can learn (the correct candidate prints its own letter)."""
    name = "synthetic"
    reward_fns = ("list_em",)  # its short user turn has no score instructions
    needs_train_path = False
    has_heldout = True

    def read_items(self, cfg: Any, *, heldout: bool = False) -> list[VerifierList]:
        s = cfg.data.synthetic
        if heldout:  # a different seed: lists the policy never trained on
            return make_synthetic_lists(cfg.evaluation.num_lists, num_candidates=s.num_candidates,
                                        seed=s.seed + 1_000_000, repeats=s.repeats, idx_prefix="heldout")
        return make_synthetic_lists(s.num_lists, num_candidates=s.num_candidates, seed=s.seed, repeats=s.repeats)

    def heldout_items(self, cfg: Any) -> list:
        """``evaluation.data_path`` (synthetic lists written to a file), else lists of another seed."""
        return super().heldout_items(cfg) if cfg.evaluation.data_path else self.read_items(cfg, heldout=True)

    def prompt_ids(self, item: VerifierList, tokenizer: Any, style: str, mode: str = "list") -> list[int]:
        return verifier_prompt_ids(item, tokenizer, style=style, synthetic=True)
