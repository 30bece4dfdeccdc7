"""The training items of every ``data.kind`` and the ``data.num_candidates`` / ``data.max_prompt_tokens`` filters.

``load_training_data(cfg, tokenizer)`` gives the controller one shape whatever the task: items
(``VerifierList`` for ``lists``/``synthetic``, ``CodegenTask`` for ``codegen``), their prompt token
ids, what the reward pool scores each prompt against (the list itself | the task's sandbox
``Submission`` template) and a data report; ``cold_start_text`` is the SFT target of an item.

Nothing is dropped silently: the returned report counts the lists each filter removed (the
trainer logs it and puts it in the run summary), and with no token limit a prompt that does not
fit ``model.max_model_len - rollout.max_new_tokens`` is an error naming the list.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from aletheia_ray.codegen import CodegenTask, codegen_completion, codegen_prompt_ids, cold_start_code, load_codegen_tasks
from aletheia_ray.data.lists import load_lists
from aletheia_ray.data.records import LETTERS, VerifierList
from aletheia_ray.data.synthetic import make_synthetic_lists
from aletheia_ray.train_batches import verdict_completion, verifier_prompt_ids


class NoTrainingListsError(ValueError):
    """The data filters removed every list."""


def select_training_lists(items: Sequence[VerifierList], prompt_ids: Sequence[list[int]], *, budget: int,
                          num_candidates: Optional[Sequence[int]] = None, max_prompt_tokens: Optional[int] = None,
                          source: str = "data") -> tuple[list[VerifierList], list[list[int]], dict[str, int]]:
    """Keep the lists whose candidate count is allowed and whose prompt fits; return (lists, ids, report).

    Code-generation tasks go through the same filters (``num_candidates`` is None for them)."""
    if max_prompt_tokens is not None and max_prompt_tokens > budget:
        raise ValueError(f"data.max_prompt_tokens ({max_prompt_tokens}) exceeds model.max_model_len - "
                         f"rollout.max_new_tokens = {budget}")
    kept_items, kept_ids = [], []
    dropped_candidates = dropped_tokens = 0
    for lst, ids in zip(items, prompt_ids):
        if num_candidates is not None and len(lst.candidates) not in num_candidates:
            dropped_candidates += 1
            continue
        if max_prompt_tokens is not None and len(ids) > max_prompt_tokens:
            dropped_tokens += 1
            continue
        if len(ids) > budget:
            raise ValueError(f"list idx={lst.idx}: prompt has {len(ids)} tokens, more than model.max_model_len - "
                             f"rollout.max_new_tokens = {budget}; raise model.max_model_len or set "
                             f"data.max_prompt_tokens to drop such lists")
        kept_items.append(lst)
        kept_ids.append(ids)
    report = {"data/num_lists_read": len(items), "data/num_lists": len(kept_items),
              "data/dropped_num_candidates": dropped_candidates, "data/dropped_prompt_tokens": dropped_tokens}
    if not kept_items:
        raise NoTrainingListsError(f"{source}: no list left after the filters (data.num_candidates={num_candidates}, "
                                   f"data.max_prompt_tokens={max_prompt_tokens}): {report}")
    return kept_items, kept_ids, report


@dataclass
class TrainingData:
    items: list  # VerifierList (lists, synthetic) | CodegenTask (codegen)
    prompt_ids: list[list[int]]
    reward_items: list  # per item, what RewardPool.score judges it against
    report: dict[str, int]  # data/* counts for the log and summary.json


def load_training_data(cfg: Any, tokenizer: Any) -> TrainingData:
    """Load, prompt and filter the items of ``cfg.data`` (a ``TrainConfig``)."""
    d = cfg.data
    read_report: dict[str, int] = {}
    if d.kind == "synthetic":
        items = make_synthetic_lists(d.synthetic.num_lists, num_candidates=d.synthetic.num_candidates,
                                     seed=d.synthetic.seed, repeats=d.synthetic.repeats)
    elif not Path(d.train_path).exists():
        raise FileNotFoundError(f"data.train_path: file {d.train_path} not found")
    elif d.kind == "codegen":
        items, read_report = load_codegen_tasks(d.train_path, max_call_inputs=d.max_call_inputs)
    else:
        items = load_lists(d.train_path)
    if d.kind == "codegen":
        prompt_ids = [codegen_prompt_ids(task, tokenizer, style=d.prompt_style) for task in items]
    else:
        prompt_ids = [verifier_prompt_ids(lst, tokenizer, style=d.prompt_style, synthetic=d.kind == "synthetic")
                      for lst in items]
    items, prompt_ids, report = select_training_lists(
        items, prompt_ids, budget=cfg.model.max_model_len - cfg.rollout.max_new_tokens,
        num_candidates=d.num_candidates if d.kind == "lists" else None, max_prompt_tokens=d.max_prompt_tokens,
        source=d.train_path or "synthetic lists")
    reward_items = [t.template for t in items] if d.kind == "codegen" else list(items)
    return TrainingData(items, prompt_ids, reward_items, {**read_report, **report})


def cold_start_text(item: Any, targets: str, style: str, reasoning: str, rng: random.Random) -> str:
    """The SFT target of one item: a formatted verdict (lists) or a ```python block (codegen)."""
    if isinstance(item, CodegenTask):
        return codegen_completion(cold_start_code(item, targets), style, reasoning)
    letter = item.chosen_answer if targets == "correct" else rng.choice(LETTERS[:len(item.candidates)])
    return verdict_completion(letter, style, reasoning)
