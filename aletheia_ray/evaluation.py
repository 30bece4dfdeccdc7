"""Scoring behind ``aletheia-eval score``: load predictions, join them to lists, compute metrics.

Prediction rows (JSONL):
  listwise  ``{"idx": ..., "completions": [str, ...]}``                 K samples for one list
  pairwise  ``{"idx": ..., "pair": [i, j], "completions": [str, ...]}``  A means i, B means j
Predictions join to lists on ``str(idx)``. Nothing is dropped silently: malformed rows, unknown
idx, duplicates, invalid pairs and lists without predictions all land in ``problems``.
Kendall tau uses the first sample of each pair; ListAcc uses the first sample of each list.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from tqdm import tqdm

from aletheia_ray import metrics as M
from aletheia_ray.data.records import VerifierList
from aletheia_ray.rewards import parse_verdict

MAX_LISTED_PROBLEMS = 50  # per problem kind in METRICS.json; counts are always complete
PROBLEM_KINDS = ("malformed_rows", "unknown_idx", "duplicate_predictions", "invalid_pairs",
                 "lists_without_predictions", "lists_with_missing_pairs")


@dataclass
class ListPrediction:
    idx: str
    completions: list[str]
    row: int  # 1-based line number in the predictions file


@dataclass
class PairPrediction:
    idx: str
    pair: tuple[int, int]
    completions: list[str]
    row: int


@dataclass
class Predictions:
    listwise: list[ListPrediction] = field(default_factory=list)
    pairwise: list[PairPrediction] = field(default_factory=list)
    malformed: list[dict[str, Any]] = field(default_factory=list)  # {"row", "error"}


def _parse_row(obj: Any) -> tuple[Optional[object], str]:
    if not isinstance(obj, dict):
        return None, f"row is a {type(obj).__name__}, expected an object"
    unknown = set(obj) - {"idx", "pair", "completions"}
    if unknown:
        return None, f"unknown keys {sorted(unknown)}"
    if "idx" not in obj or not isinstance(obj["idx"], (str, int)) or isinstance(obj["idx"], bool):
        return None, "missing or non-scalar 'idx'"
    comps = obj.get("completions")
    if not isinstance(comps, list) or not comps or not all(isinstance(c, str) for c in comps):
        return None, "'completions' must be a non-empty list of strings"
    if "pair" not in obj:
        return ListPrediction(str(obj["idx"]), comps, 0), ""
    pair = obj["pair"]
    if not (isinstance(pair, list) and len(pair) == 2 and all(type(p) is int for p in pair)):
        return None, f"'pair' must be two integers, got {pair!r}"
    return PairPrediction(str(obj["idx"]), (pair[0], pair[1]), comps, 0), ""


def load_predictions(path: str | Path) -> Predictions:
    """Read a predictions JSONL; malformed rows are collected with their line numbers."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file not found: {path}")
    preds = Predictions()
    with path.open(encoding="utf-8") as fh:
        for row, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                preds.malformed.append({"row": row, "error": f"invalid JSON: {exc.msg}"})
                continue
            pred, error = _parse_row(obj)
            if pred is None:
                preds.malformed.append({"row": row, "error": error})
                continue
            pred.row = row
            (preds.pairwise if isinstance(pred, PairPrediction) else preds.listwise).append(pred)
    if not preds.listwise and not preds.pairwise:
        first = preds.malformed[:3]
        raise ValueError(f"{path}: no valid prediction rows ({len(preds.malformed)} malformed; first: {first})")
    return preds


@dataclass
class _ListOutcome:
    """Parsed verdicts of one list: listwise samples, pairwise first-sample outcomes."""

    lst: VerifierList
    samples: list[Optional[str]] = field(default_factory=list)
    pair_outcomes: list[tuple[int, int, Optional[int]]] = field(default_factory=list)
    pair_samples: list[Optional[str]] = field(default_factory=list)  # all pairwise samples


def _pair_error(i: int, j: int, n: int, reversed_row: Optional[int]) -> str:
    if i == j or not (0 <= i < n and 0 <= j < n):
        return f"needs two distinct candidates in 0..{n - 1}"
    if reversed_row is not None:
        return f"pair ({j}, {i}) already given at row {reversed_row}; score each unordered pair once"
    return ""


def _join(lists: Sequence[VerifierList], preds: Predictions, style: str, strict: bool):
    by_idx: dict[str, VerifierList] = {}
    for lst in lists:
        if str(lst.idx) in by_idx:
            raise ValueError(f"duplicate list idx {lst.idx!r} in the data")
        by_idx[str(lst.idx)] = lst
    problems: dict[str, list] = {kind: [] for kind in PROBLEM_KINDS}
    problems["malformed_rows"] = list(preds.malformed)
    failures: Counter = Counter()
    outcomes: dict[str, _ListOutcome] = {}
    seen: dict[tuple, int] = {}

    def verdicts(comps: list[str], n: int) -> list[Optional[str]]:
        parsed = [parse_verdict(c, n, style, strict=strict) for c in comps]
        failures.update(p.reason for p in parsed if not p.ok)
        return [p.letter for p in parsed]

    rows: list = sorted(preds.listwise + preds.pairwise, key=lambda p: p.row)
    for pred in tqdm(rows, desc="scoring predictions", unit="row", disable=None):
        lst = by_idx.get(pred.idx)
        if lst is None:
            problems["unknown_idx"].append({"row": pred.row, "idx": pred.idx})
            continue
        pair = getattr(pred, "pair", None)
        key = (pred.idx, pair)
        if key in seen:
            problems["duplicate_predictions"].append({"row": pred.row, "idx": pred.idx, "pair": pair,
                                                      "first_row": seen[key]})
            continue
        seen[key] = pred.row
        out = outcomes.setdefault(pred.idx, _ListOutcome(lst))
        n = len(lst.candidates)
        if pair is None:
            out.samples = verdicts(pred.completions, n)
            continue
        i, j = pair
        error = _pair_error(i, j, n, seen.get((pred.idx, (j, i))))
        if error:
            problems["invalid_pairs"].append({"row": pred.row, "idx": pred.idx, "pair": list(pair), "error": error})
            continue
        letters = verdicts(pred.completions, 2)
        out.pair_samples.extend(letters)
        first = letters[0]
        out.pair_outcomes.append((i, j, None if first is None else (i if first == "A" else j)))
    for idx, lst in by_idx.items():
        out = outcomes.get(idx)
        if out is None:
            problems["lists_without_predictions"].append(idx)
        elif out.pair_outcomes and len(out.pair_outcomes) < len(lst.candidates) * (len(lst.candidates) - 1) // 2:
            problems["lists_with_missing_pairs"].append({"idx": idx, "pairs": len(out.pair_outcomes)})
    return outcomes, problems, failures


LISTWISE_KEYS = ("list_acc", "list_acc_mean_over_samples", "list_parse_rate", "samples_per_list", "sc_at_k",
                 "sc_at_k_n_lists", "random_baseline_list_acc")
PAIRWISE_KEYS = ("kendall_tau_b", "kendall_tau_undefined_lists", "n_pairs", "pair_parse_rate", "pair_acc")


def _listwise_metrics(listwise: list[_ListOutcome]) -> dict[str, Any]:
    answers = [o.lst.chosen_answer for o in listwise]
    max_k = max(len(o.samples) for o in listwise)
    sc, sc_n = {}, {}
    for k in M.sc_k_values(max_k):  # lists with fewer than k samples sit out SC@k
        have = [o for o in listwise if len(o.samples) >= k]
        sc[str(k)] = M.sc_at_k([o.samples for o in have], [o.lst.chosen_answer for o in have], k)
        sc_n[str(k)] = len(have)
    per_list_mean = [M.list_accuracy(o.samples, [o.lst.chosen_answer] * len(o.samples)) for o in listwise]
    return {
        "list_acc": M.list_accuracy([o.samples[0] for o in listwise], answers),
        "list_acc_mean_over_samples": M.safe_mean(per_list_mean),
        "list_parse_rate": M.parse_rate([v for o in listwise for v in o.samples]),
        "samples_per_list": max_k,
        "sc_at_k": sc,
        "sc_at_k_n_lists": sc_n,
        "random_baseline_list_acc": M.random_baseline_list_acc([o.lst for o in listwise]),
    }


def _pairwise_metrics(pairwise: list[_ListOutcome], tau_undefined: str) -> dict[str, Any]:
    taus = [M.kendall_tau_b(M.tournament_win_counts(len(o.lst.candidates), o.pair_outcomes), o.lst.pass_rates)
            for o in pairwise]
    mean_tau, n_undefined = M.mean_kendall_tau(taus, tau_undefined)
    # pair_acc: share of games between different pass rates won by the higher one (unparsed = lost)
    decided = [float(w is not None and o.lst.pass_rates[w] == max(o.lst.pass_rates[i], o.lst.pass_rates[j]))
               for o in pairwise for i, j, w in o.pair_outcomes if o.lst.pass_rates[i] != o.lst.pass_rates[j]]
    return {
        "kendall_tau_b": mean_tau,
        "kendall_tau_undefined_lists": n_undefined,
        "n_pairs": sum(len(o.pair_outcomes) for o in pairwise),
        "pair_parse_rate": M.parse_rate([v for o in pairwise for v in o.pair_samples]),
        "pair_acc": M.safe_mean(decided) if decided else None,
    }


def _block(outs: list[_ListOutcome], tau_undefined: str) -> dict[str, Any]:
    """All metrics over one set of lists; keys of an absent prediction kind are null."""
    listwise = [o for o in outs if o.samples]
    pairwise = [o for o in outs if o.pair_outcomes]
    all_samples = [v for o in outs for v in o.samples + o.pair_samples]
    block: dict[str, Any] = {"n_lists": len(outs), "n_lists_listwise": len(listwise),
                             "n_lists_pairwise": len(pairwise),
                             "parse_rate": M.parse_rate(all_samples) if all_samples else None}
    block.update(_listwise_metrics(listwise) if listwise else dict.fromkeys(LISTWISE_KEYS))
    block.update(_pairwise_metrics(pairwise, tau_undefined) if pairwise else dict.fromkeys(PAIRWISE_KEYS))
    return block


def _grouped(outs: Iterable[_ListOutcome], key, tau_undefined: str) -> dict[str, Any]:
    groups: dict[str, list[_ListOutcome]] = defaultdict(list)
    for o in outs:
        groups[str(key(o.lst))].append(o)
    return {name: _block(groups[name], tau_undefined) for name in sorted(groups)}


def score_predictions(lists: Sequence[VerifierList], preds: Predictions, *, style: str = "think",
                      strict: bool = False, tau_undefined: str = "minus_one") -> dict[str, Any]:
    """Join predictions to lists and compute every metric; see the module docstring."""
    if tau_undefined not in M.TAU_UNDEFINED_MODES:
        raise ValueError(f"tau_undefined must be one of {M.TAU_UNDEFINED_MODES}, got {tau_undefined!r}")
    outcomes, problems, failures = _join(lists, preds, style, strict)
    outs = list(outcomes.values())
    if not outs:
        raise ValueError(f"no prediction matched a list idx ({len(problems['unknown_idx'])} unknown idx rows)")
    result = _block(outs, tau_undefined)
    result.update({
        "n_lists_in_data": len(lists),
        "style": style, "strict": strict, "tau_undefined": tau_undefined,
        "parse_failures": dict(failures.most_common()),
        "by_language": _grouped(outs, lambda lst: lst.language, tau_undefined),
        "by_num_candidates": _grouped(outs, lambda lst: len(lst.candidates), tau_undefined),
        "problems": {kind: {"count": len(items), "items": items[:MAX_LISTED_PROBLEMS]}
                     for kind, items in problems.items()},
    })
    return result
