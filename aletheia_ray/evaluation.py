"""Scoring behind ``aletheia-eval score``: load predictions, join them to lists, compute metrics.

Prediction rows (JSONL):
  listwise  ``{"idx": ..., "completions": [str, ...]}``                 K samples for one list
  pairwise  ``{"idx": ..., "pair": [i, j], "completions": [str, ...]}``  A means i, B means j
Predictions join to lists on ``str(idx)``. Nothing is dropped silently: malformed rows, unknown
idx, duplicates, invalid pairs and lists without predictions all land in ``problems``.
ListAcc uses the first sample of each list: ``list_acc`` over the lists with a listwise
prediction, ``list_acc_over_data`` over every list of the data (no prediction = wrong).
Kendall tau uses every sample of every pair (``metrics.kendall_tau_b_over_samples``: the mean
over sample rounds); ``pair_acc`` counts every sample as a game.
``incomplete_lists`` names the lists a kind of prediction present in the file does not cover.
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
from aletheia_ray.verdicts import parse_verdict

MAX_LISTED_PROBLEMS = 50  # per problem kind in METRICS.json; counts are always complete
PROBLEM_KINDS = ("malformed_rows", "unknown_idx", "duplicate_predictions", "invalid_pairs",
                 "lists_without_predictions", "lists_with_missing_pairs", "lists_with_unequal_pair_samples")


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
    """Parsed verdicts of one list: listwise samples, pairwise games (a winner per sample)."""

    lst: VerifierList
    samples: list[Optional[str]] = field(default_factory=list)
    pair_games: list[tuple[int, int, list[Optional[int]]]] = field(default_factory=list)  # (i, j, winners)
    pair_samples: list[Optional[str]] = field(default_factory=list)  # all pairwise verdict letters


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
        out.pair_games.append((i, j, [None if v is None else (i if v == "A" else j) for v in letters]))
    for idx, lst in by_idx.items():
        out = outcomes.get(idx)
        if out is None:
            problems["lists_without_predictions"].append(idx)
            continue
        if out.pair_games and len(out.pair_games) < _n_pairs(lst):
            problems["lists_with_missing_pairs"].append({"idx": idx, "pairs": len(out.pair_games)})
        counts = {len(w) for _, _, w in out.pair_games}
        if len(counts) > 1:  # Kendall tau reads the first min(counts) samples of every pair
            problems["lists_with_unequal_pair_samples"].append({"idx": idx, "min": min(counts), "max": max(counts)})
    return outcomes, problems, failures


def _n_pairs(lst: VerifierList) -> int:
    return len(lst.candidates) * (len(lst.candidates) - 1) // 2


def _incomplete_lists(lists: Sequence[VerifierList], outcomes: dict[str, _ListOutcome]) -> list[str]:
    """idx (data order) of lists not covered by every prediction kind the file has: no listwise
    row while other lists have one, or not all pairs while other lists have pairwise rows."""
    has_list = any(o.samples for o in outcomes.values())
    has_pair = any(o.pair_games for o in outcomes.values())
    missing = []
    for lst in lists:
        out = outcomes.get(str(lst.idx))
        listwise_ok = out is not None and bool(out.samples)
        pairs_ok = out is not None and len(out.pair_games) == _n_pairs(lst)
        if not ((listwise_ok or not has_list) and (pairs_ok or not has_pair) and (listwise_ok or pairs_ok)):
            missing.append(str(lst.idx))
    return missing


LISTWISE_KEYS = ("list_acc", "list_acc_over_data", "n_lists_missing_listwise", "list_acc_mean_over_samples",
                 "list_parse_rate", "samples_per_list", "sc_at_k", "sc_at_k_n_lists", "random_baseline_list_acc")
PAIRWISE_KEYS = ("kendall_tau_b", "kendall_tau_undefined_lists", "kendall_tau_undefined_rounds", "samples_per_pair",
                 "n_pairs", "n_pairs_equal_pass_rates", "pair_parse_rate", "pair_acc")


def _listwise_metrics(listwise: list[_ListOutcome], n_data: int) -> dict[str, Any]:
    answers = [o.lst.chosen_answer for o in listwise]
    max_k = max(len(o.samples) for o in listwise)
    sc, sc_n = {}, {}
    for k in M.sc_k_values(max_k):  # lists with fewer than k samples sit out SC@k
        have = [o for o in listwise if len(o.samples) >= k]
        sc[str(k)] = M.sc_at_k([o.samples for o in have], [o.lst.chosen_answer for o in have], k)
        sc_n[str(k)] = len(have)
    per_list_mean = [M.list_accuracy(o.samples, [o.lst.chosen_answer] * len(o.samples)) for o in listwise]
    hits = sum(o.samples[0] == o.lst.chosen_answer for o in listwise)
    return {
        "list_acc": M.list_accuracy([o.samples[0] for o in listwise], answers),
        "list_acc_over_data": hits / n_data,  # a data list without a listwise prediction is wrong
        "n_lists_missing_listwise": n_data - len(listwise),
        "list_acc_mean_over_samples": M.safe_mean(per_list_mean),
        "list_parse_rate": M.parse_rate([v for o in listwise for v in o.samples]),
        "samples_per_list": max_k,
        "sc_at_k": sc,
        "sc_at_k_n_lists": sc_n,
        "random_baseline_list_acc": M.random_baseline_list_acc([o.lst for o in listwise]),
    }


def _pairwise_metrics(pairwise: list[_ListOutcome], tau_undefined: str) -> dict[str, Any]:
    per_list = [M.kendall_tau_b_over_samples(len(o.lst.candidates), o.pair_games, o.lst.pass_rates, tau_undefined)
                for o in pairwise]
    # minus_one: a list tau is never nan (undefined rounds are -1); skip: nan when no round is defined
    mean_tau, _ = M.mean_kendall_tau([tau for tau, _, _ in per_list], tau_undefined)
    # pair_acc: share of games (every sample) between different pass rates won by the higher one
    # (unparsed = lost); pairs with equal pass rates have no winner and are only counted
    def pr(o: _ListOutcome, c: int) -> float:
        return o.lst.pass_rates[c]

    decided = [float(w is not None and pr(o, w) == max(pr(o, i), pr(o, j)))
               for o in pairwise for i, j, ws in o.pair_games if pr(o, i) != pr(o, j) for w in ws]
    return {
        "kendall_tau_b": mean_tau,
        "kendall_tau_undefined_lists": sum(undef == rounds for _, rounds, undef in per_list),
        "kendall_tau_undefined_rounds": sum(undef for _, _, undef in per_list),
        "samples_per_pair": max(len(ws) for o in pairwise for _, _, ws in o.pair_games),
        "n_pairs": sum(len(o.pair_games) for o in pairwise),
        "n_pairs_equal_pass_rates": sum(pr(o, i) == pr(o, j) for o in pairwise for i, j, _ in o.pair_games),
        "pair_parse_rate": M.parse_rate([v for o in pairwise for v in o.pair_samples]),
        "pair_acc": M.safe_mean(decided) if decided else None,
    }


def _block(outs: list[_ListOutcome], tau_undefined: str, n_data: int) -> dict[str, Any]:
    """All metrics over one set of lists (``n_data`` of them in the data); keys of an absent
    prediction kind are null."""
    listwise = [o for o in outs if o.samples]
    pairwise = [o for o in outs if o.pair_games]
    all_samples = [v for o in outs for v in o.samples + o.pair_samples]
    block: dict[str, Any] = {"n_lists": len(outs), "n_lists_in_data": n_data, "n_lists_listwise": len(listwise),
                             "n_lists_pairwise": len(pairwise),
                             "parse_rate": M.parse_rate(all_samples) if all_samples else None}
    block.update(_listwise_metrics(listwise, n_data) if listwise else dict.fromkeys(LISTWISE_KEYS))
    block.update(_pairwise_metrics(pairwise, tau_undefined) if pairwise else dict.fromkeys(PAIRWISE_KEYS))
    return block


def _grouped(outs: Iterable[_ListOutcome], lists: Sequence[VerifierList], key, tau_undefined: str) -> dict[str, Any]:
    """One block per group that has predictions (``n_lists_in_data``: the group's lists in the data)."""
    groups: dict[str, list[_ListOutcome]] = defaultdict(list)
    for o in outs:
        groups[str(key(o.lst))].append(o)
    in_data = Counter(str(key(lst)) for lst in lists)
    return {name: _block(groups[name], tau_undefined, in_data[name]) for name in sorted(groups)}


def score_predictions(lists: Sequence[VerifierList], preds: Predictions, *, style: str = "think",
                      strict: bool = False, tau_undefined: str = "minus_one") -> dict[str, Any]:
    """Join predictions to lists and compute every metric; see the module docstring."""
    if tau_undefined not in M.TAU_UNDEFINED_MODES:
        raise ValueError(f"tau_undefined must be one of {M.TAU_UNDEFINED_MODES}, got {tau_undefined!r}")
    outcomes, problems, failures = _join(lists, preds, style, strict)
    outs = list(outcomes.values())
    if not outs:
        raise ValueError(f"no prediction matched a list idx ({len(problems['unknown_idx'])} unknown idx rows)")
    result = _block(outs, tau_undefined, len(lists))
    incomplete = _incomplete_lists(lists, outcomes)
    result.update({
        "style": style, "strict": strict, "tau_undefined": tau_undefined,
        "parse_failures": dict(failures.most_common()),
        "incomplete_lists": {"count": len(incomplete), "items": incomplete[:MAX_LISTED_PROBLEMS]},
        "by_language": _grouped(outs, lists, lambda lst: lst.language, tau_undefined),
        "by_num_candidates": _grouped(outs, lists, lambda lst: len(lst.candidates), tau_undefined),
        "problems": {kind: {"count": len(items), "items": items[:MAX_LISTED_PROBLEMS]}
                     for kind, items in problems.items()},
    })
    return result
