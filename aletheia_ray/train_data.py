"""Selecting the training lists: the ``data.num_candidates`` / ``data.max_prompt_tokens`` filters.

Nothing is dropped silently: the returned report counts the lists each filter removed (the
trainer logs it and puts it in the run summary), and with no token limit a prompt that does not
fit ``model.max_model_len - rollout.max_new_tokens`` is an error naming the list.
"""
from __future__ import annotations

from typing import Optional, Sequence

from aletheia_ray.data.records import VerifierList


class NoTrainingListsError(ValueError):
    """The data filters removed every list."""


def select_training_lists(items: Sequence[VerifierList], prompt_ids: Sequence[list[int]], *, budget: int,
                          num_candidates: Optional[Sequence[int]] = None, max_prompt_tokens: Optional[int] = None,
                          source: str = "data") -> tuple[list[VerifierList], list[list[int]], dict[str, int]]:
    """Keep the lists whose candidate count is allowed and whose prompt fits; return (lists, ids, report)."""
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
