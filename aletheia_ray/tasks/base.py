"""The task protocol: everything the controller needs to know about what it trains on.

A task (``data.kind`` names it, ``aletheia_ray.tasks.TASKS``) supplies:
  * ``load(cfg, tokenizer)``: the items, their prompt token ids, what the reward scores each item
    against (its reward item) and a data report (``TaskData``), filtered by ``select_items``;
  * ``cold_start_text(item, targets, style, reasoning, rng, fn)``: the SFT target of an item (in the
    answer format of reward ``fn``);
  * ``scorer(cfg)``: the reward (``aletheia_ray.rewards``: ``VerdictScorer`` | ``PassRateScorer``);
  * ``heldout(cfg, tokenizer)``: held-out items for the evaluation (``evaluation.data_path``, or a
    set of its own: ``has_heldout``), ``heldout_metrics(items, gens, k)`` over their scored samples and
    ``eval_keys(k)`` naming what that reports (``aletheia_ray.eval_schedule``);
  * what it accepts in the config (``reward_fns``: the first is the default of ``reward.fn``;
    ``cold_start_targets``; ``needs_train_path``), checked at config load time.
The controller, the config and the actors never branch on the task's name.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Sequence

from aletheia_ray.eval_schedule import eval_keys
from aletheia_ray.metrics import random_baseline_list_acc
from aletheia_ray.rewards import Overlong, PassRateScorer, VerdictScorer


@dataclass
class TaskData:
    items: list  # VerifierList | VerifierPair | CodegenTask
    prompt_ids: list[list[int]]
    reward_items: list  # per item, what the reward pool judges it against
    report: dict[str, int]  # data/* counts for the log and summary.json


class NoTrainingItemsError(ValueError):
    """The data filters removed every item."""


class Task:
    name: ClassVar[str]
    reward_fns: ClassVar[tuple[str, ...]]  # reward.fn values this task can train with; [0] is the default
    cold_start_targets: ClassVar[tuple[str, ...]]
    needs_train_path: ClassVar[bool] = True
    item_noun: ClassVar[str] = "lists"  # in the log line
    has_heldout: ClassVar[bool] = False  # heldout() gives items without evaluation.data_path
    eval_accuracy_key: ClassVar[str] = "eval/list_acc"  # the held-out accuracy (default evaluation.metric)

    def load(self, cfg: Any, tokenizer: Any) -> TaskData:
        raise NotImplementedError

    def cold_start_text(self, item: Any, targets: str, style: str, reasoning: str, rng: random.Random,
                        fn: Optional[str] = None) -> str:
        raise NotImplementedError

    def reward_fn(self, cfg: Any) -> str:
        return cfg.reward.fn or self.reward_fns[0]

    def scorer(self, cfg: Any) -> VerdictScorer | PassRateScorer:
        return VerdictScorer(fn=self.reward_fn(cfg), style=cfg.data.prompt_style,
                             strict=cfg.reward.strict, overlong=overlong(cfg))

    def heldout(self, cfg: Any, tokenizer: Any) -> Optional[TaskData]:
        return None

    def eval_keys(self, k: int) -> tuple[str, ...]:
        """The keys ``heldout_metrics`` returns for k samples per item (the accuracy first)."""
        return eval_keys(self.eval_accuracy_key, self.item_noun, k)

    def heldout_metrics(self, items: Sequence[Any], gens: Sequence[Any], k: int) -> dict[str, float]:
        raise NotImplementedError

    def random_baseline(self, items: Sequence[Any]) -> float:
        return random_baseline_list_acc(items)


def overlong(cfg: Any) -> Optional[Overlong]:
    o = cfg.reward.overlong
    return Overlong(cfg.rollout.max_new_tokens, o.cache) if o.enabled else None


def prompt_budget(cfg: Any) -> int:
    return cfg.model.max_model_len - cfg.rollout.max_new_tokens


def select_items(items: Sequence[Any], prompt_ids: Sequence[list[int]], *, budget: int,
                 num_candidates: Optional[Sequence[int]] = None, max_prompt_tokens: Optional[int] = None,
                 source: str = "data") -> tuple[list, list[list[int]], dict[str, int]]:
    """Keep the items whose candidate count is allowed and whose prompt fits; return (items, ids, report).

    Nothing is dropped silently: the report counts the items each filter removed, and with no token
    limit a prompt that does not fit ``budget`` is an error naming the item."""
    if max_prompt_tokens is not None and max_prompt_tokens > budget:
        raise ValueError(f"data.max_prompt_tokens ({max_prompt_tokens}) exceeds model.max_model_len - "
                         f"rollout.max_new_tokens = {budget}")
    kept_items, kept_ids = [], []
    dropped_candidates = dropped_tokens = 0
    for item, ids in zip(items, prompt_ids):
        if num_candidates is not None and len(item.candidates) not in num_candidates:
            dropped_candidates += 1
            continue
        if max_prompt_tokens is not None and len(ids) > max_prompt_tokens:
            dropped_tokens += 1
            continue
        if len(ids) > budget:
            raise ValueError(f"list idx={item.idx}: prompt has {len(ids)} tokens, more than model.max_model_len - "
                             f"rollout.max_new_tokens = {budget}; raise model.max_model_len or set "
                             f"data.max_prompt_tokens to drop such lists")
        kept_items.append(item)
        kept_ids.append(ids)
    report = {"data/num_lists_read": len(items), "data/num_lists": len(kept_items),
              "data/dropped_num_candidates": dropped_candidates, "data/dropped_prompt_tokens": dropped_tokens}
    if not kept_items:
        raise NoTrainingItemsError(f"{source}: no list left after the filters (data.num_candidates={num_candidates}, "
                                   f"data.max_prompt_tokens={max_prompt_tokens}): {report}")
    return kept_items, kept_ids, report
