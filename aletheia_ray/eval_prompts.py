"""Evaluation prompts and prediction rows for ``aletheia-eval run`` (pure: no Ray, no vLLM).

    plan = plan_eval_prompts(lists, tokenizer, mode="list", style="think", max_prompt_tokens=L)
    gens = pool.generate([p.token_ids for p in plan.prompts], n=k, ...)   # the rollout pool
    rows = prediction_rows(plan.prompts, gens, n=k)                      # foundations' format

Modes: ``list`` (one prompt per list; K samples give SC@K) and ``pair`` (one prompt per candidate
pair i < j, each its own generation; ``both_orders`` adds j, i for position-bias control).
Prompt formats: ``standard`` (``aletheia_ray.prompts``) and ``synthetic`` (the synthetic learning
task's short user turn, list mode only), both exactly as the trainer renders them.

Prompts longer than ``max_prompt_tokens`` (= max_model_len - max_new_tokens, so every response
gets the full budget) are never dropped silently. Policy ``error`` (default) stops before any
generation with a message naming every too-long list; ``skip`` leaves those lists out (in pair
mode the whole list, so no tournament is scored on a partial set of games) and records each one
in ``plan.report()`` for METRICS.json. Truncating a prompt is not offered: cutting candidate code
or the answer instructions would change the task being measured.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from tqdm import tqdm

from aletheia_ray.data.lists import all_pairs
from aletheia_ray.data.records import VerifierList
from aletheia_ray.data.synthetic import synthetic_user_message
from aletheia_ray.prompts import build_messages, prompt_token_ids
from aletheia_ray.verdicts import parse_verdict

MODES = ("list", "pair")
PROMPT_FORMATS = ("standard", "synthetic")
TOO_LONG_POLICIES = ("error", "skip")
MAX_LISTED_TOO_LONG = 20  # in error messages; the report lists every one


class EvalPlanError(ValueError):
    """Prompts cannot be built as asked (too long under policy ``error``, bad arguments)."""


@dataclass(frozen=True)
class EvalPrompt:
    """One generation request: list ``idx``, the shown pair (pair mode) and its token ids."""

    idx: str
    pair: Optional[tuple[int, int]]
    token_ids: list[int]


@dataclass(frozen=True)
class TooLongPrompt:
    idx: str
    pair: Optional[tuple[int, int]]
    prompt_tokens: int

    def describe(self) -> str:
        where = f"idx={self.idx!r}" + (f" pair={list(self.pair)}" if self.pair else "")
        return f"{where}: {self.prompt_tokens} tokens"


@dataclass
class EvalPlan:
    mode: str
    prompts: list[EvalPrompt]
    too_long: list[TooLongPrompt]
    max_prompt_tokens: int
    policy: str
    n_lists: int  # lists given to the plan

    @property
    def skipped_lists(self) -> list[str]:
        return sorted({t.idx for t in self.too_long})

    @property
    def longest_prompt(self) -> int:
        return max((len(p.token_ids) for p in self.prompts), default=0)

    def report(self) -> dict[str, Any]:
        """The ``prompts`` block of METRICS.json: counts, lengths and every too-long prompt."""
        lengths = [len(p.token_ids) for p in self.prompts]
        return {
            "mode": self.mode,
            "n_lists": self.n_lists,
            "n_prompts": len(self.prompts),
            "prompt_tokens_mean": sum(lengths) / len(lengths) if lengths else None,
            "prompt_tokens_max": max(lengths, default=None),
            "max_prompt_tokens": self.max_prompt_tokens,
            "too_long_policy": self.policy,
            "n_lists_skipped_too_long": len(self.skipped_lists),
            "too_long": [{"idx": t.idx, "pair": list(t.pair) if t.pair else None,
                          "prompt_tokens": t.prompt_tokens} for t in self.too_long],
        }


def eval_messages(lst: VerifierList, *, mode: str, style: str, pair: Optional[tuple[int, int]],
                  prompt_format: str = "standard") -> list[dict]:
    """Chat messages of one evaluation prompt (``synthetic``: the trainer's synthetic-task turn)."""
    if prompt_format == "synthetic":
        return [{"role": "user", "content": synthetic_user_message(lst)}]
    return build_messages(lst, style=style, mode=mode, pair=pair)


def plan_eval_prompts(lists: Sequence[VerifierList], tokenizer: Any, *, mode: str = "list", style: str = "think",
                      max_prompt_tokens: int, both_orders: bool = False, too_long: str = "error",
                      prefill: str = "", prompt_format: str = "standard", progress: bool = True) -> EvalPlan:
    """Render and tokenize every prompt; apply the too-long policy (see the module docstring)."""
    if mode not in MODES:
        raise EvalPlanError(f"unknown eval mode {mode!r}; use one of {MODES}")
    if prompt_format not in PROMPT_FORMATS:
        raise EvalPlanError(f"unknown prompt format {prompt_format!r}; use one of {PROMPT_FORMATS}")
    if prompt_format == "synthetic" and mode != "list":
        raise EvalPlanError("the synthetic prompt format exists for list mode only")
    if too_long not in TOO_LONG_POLICIES:
        raise EvalPlanError(f"unknown too-long policy {too_long!r}; use one of {TOO_LONG_POLICIES}")
    if both_orders and mode != "pair":
        raise EvalPlanError("both_orders is only meaningful in pair mode")
    if max_prompt_tokens < 1:
        raise EvalPlanError(f"max_prompt_tokens is {max_prompt_tokens}: the response budget leaves no room for a "
                            "prompt (raise max_model_len or lower max_new_tokens)")
    seen: set[str] = set()
    prompts: list[EvalPrompt] = []
    over: list[TooLongPrompt] = []
    for lst in tqdm(lists, desc=f"tokenizing {mode} prompts", unit="list", disable=not progress or None):
        idx = str(lst.idx)
        if idx in seen:
            raise EvalPlanError(f"duplicate list idx {idx!r} in the data")
        seen.add(idx)
        pairs: list[Optional[tuple[int, int]]] = (
            all_pairs(lst, both_orders=both_orders) if mode == "pair" else [None])
        mine = [EvalPrompt(idx, pair, prompt_token_ids(
            tokenizer, eval_messages(lst, mode=mode, style=style, pair=pair, prompt_format=prompt_format),
            prefill=prefill)) for pair in pairs]
        long_ones = [TooLongPrompt(idx, p.pair, len(p.token_ids)) for p in mine if len(p.token_ids) > max_prompt_tokens]
        over.extend(long_ones)
        if not long_ones:
            prompts.extend(mine)
    if over and too_long == "error":
        shown = "; ".join(t.describe() for t in over[:MAX_LISTED_TOO_LONG])
        more = f" (and {len(over) - MAX_LISTED_TOO_LONG} more)" if len(over) > MAX_LISTED_TOO_LONG else ""
        raise EvalPlanError(
            f"{len(over)} prompt(s) of {len({t.idx for t in over})} list(s) exceed {max_prompt_tokens} prompt tokens "
            f"(max_model_len - max_new_tokens): {shown}{more}. Raise max_model_len, lower max_new_tokens, or pass "
            "the too-long policy 'skip' to leave these lists out (they are then listed in METRICS.json)")
    return EvalPlan(mode, prompts, over, max_prompt_tokens, too_long, len(lists))


def prediction_rows(prompts: Sequence[EvalPrompt], generations: Iterable[Any], n: int) -> list[dict[str, Any]]:
    """Group generations (``.prompt_index`` = position in ``prompts``) into prediction rows.

    Every prompt must have exactly ``n`` generations: a missing or extra one is an error naming
    the prompt, never a shorter row. Row order follows ``prompts``.
    """
    texts: dict[int, list[str]] = defaultdict(list)
    for g in generations:
        if not 0 <= g.prompt_index < len(prompts):
            raise ValueError(f"generation for prompt_index {g.prompt_index}, but only {len(prompts)} prompts were sent")
        texts[g.prompt_index].append(g.text)
    rows = []
    for k, p in enumerate(prompts):
        got = texts.get(k, [])
        if len(got) != n:
            where = f"idx={p.idx!r}" + (f" pair={list(p.pair)}" if p.pair else "")
            raise ValueError(f"prompt {k} ({where}) got {len(got)} generations, expected {n}")
        row: dict[str, Any] = {"idx": p.idx}
        if p.pair is not None:
            row["pair"] = list(p.pair)
        row["completions"] = got
        rows.append(row)
    return rows


def split_pair_orders(rows: Sequence[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """(rows shown as i < j, rows shown reversed j > i): each file scores on its own."""
    forward = [r for r in rows if "pair" not in r or r["pair"][0] < r["pair"][1]]
    reverse = [r for r in rows if "pair" in r and r["pair"][0] > r["pair"][1]]
    return forward, reverse


def position_bias(rows: Sequence[dict[str, Any]], *, style: str, strict: bool = False) -> dict[str, Any]:
    """Pairwise position bias from first samples: share of "A" verdicts, and, when both orders
    were generated, the share of pairs whose two orders pick the same candidate (both parsed)."""
    picks: dict[tuple[str, int, int], Optional[int]] = {}
    letters = []
    for r in rows:
        if "pair" not in r:
            continue
        i, j = r["pair"]
        letter = parse_verdict(r["completions"][0], 2, style, strict=strict).letter
        letters.append(letter)
        picks[(r["idx"], i, j)] = None if letter is None else (i if letter == "A" else j)
    parsed = [x for x in letters if x is not None]
    both = [(picks[(idx, i, j)], picks[(idx, j, i)]) for (idx, i, j) in picks if i < j and (idx, j, i) in picks]
    decided = [(a, b) for a, b in both if a is not None and b is not None]
    return {
        "pair_first_position_rate": sum(x == "A" for x in parsed) / len(parsed) if parsed else None,
        "n_pairs_parsed": len(parsed),
        "n_pairs_both_orders": len(both),
        "order_consistency": sum(a == b for a, b in decided) / len(decided) if decided else None,
        "n_pairs_both_orders_parsed": len(decided),
    }


def generation_stats(generations: Sequence[Any], seconds: float) -> dict[str, float]:
    """verl-style generation metrics: response lengths, share cut at the budget, tokens/s."""
    lengths = [len(g.response_ids) for g in generations]
    total = sum(lengths)
    n = max(len(lengths), 1)
    return {
        "n_generations": len(lengths),
        "response_length/mean": total / n,
        "response_length/max": max(lengths, default=0),
        "response_length/clip_ratio": sum(g.finish_reason == "length" for g in generations) / n,
        "timing_s/gen": seconds,
        "perf/throughput": total / seconds if seconds > 0 else 0.0,
    }


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write rows atomically (temp file + rename): a crash never leaves a half file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path
