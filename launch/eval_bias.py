"""``aletheia-eval bias``: ListAcc per adversarial modification against the unmodified Heldout.

    aletheia-eval bias --heldout HELDOUT_LISTS HELDOUT_PREDICTIONS \
        --adv ADV_LISTS ADV_PREDICTIONS --out BIAS.json [--style think] [--strict]

Lists are JSONL or parquet (``aletheia-testbed build`` with ``adversarial.mode: per_modification``
writes ``adv`` with a ``modification`` column; the authors' release names a modification
``<name>_rejected`` / ``<name>_chosen`` and is read too); predictions are the JSONL rows of
``aletheia-eval score``. ListAcc here is the first sample's verdict, a list without a prediction
or with an unparsable verdict counting as wrong (``list_acc_over_data`` of ``aletheia-eval score``).

Per modification m, over the Adv lists of m and the Heldout lists they were made from (paired by
``heldout_idx``; without that column, every Heldout list):

- ``list_acc_heldout``, ``list_acc_adv`` and ``delta`` = adv - heldout;
- ``bias_impact_ratio`` = ListAcc(Adv m) / ListAcc(Heldout, same lists): 1 means the modification
  had no effect, below 1 it fooled the verifier, above 1 it helped (null when the Heldout ListAcc
  is 0). Our definition: the paper's own formula was not found in the stored sources;
- ``flipped_to_wrong`` / ``flipped_to_right``: paired lists right on Heldout and wrong on Adv, and
  the reverse.

Per direction (positive = a claim for the program on the incorrect candidates, negative = against
the program on the correct one) the same numbers pooled over that direction's modifications.
Exit codes: 0 written; 2 bad input (missing file, Adv lists without a ``modification``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from rich.console import Console
from rich.table import Table

from aletheia_ray.data.records import VerifierList
from aletheia_ray.evaluation import Predictions, load_predictions
from aletheia_ray.prompts import STYLES
from aletheia_ray.verdicts import parse_verdict

DIRECTION_OF_TARGET = {"rejected": "positive", "chosen": "negative"}


def register(subparsers) -> None:
    p = subparsers.add_parser("bias", help="ListAcc per adversarial modification vs the unmodified Heldout",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--heldout", nargs=2, required=True, type=Path, metavar=("LISTS", "PREDICTIONS"))
    p.add_argument("--adv", nargs=2, required=True, type=Path, metavar=("LISTS", "PREDICTIONS"))
    p.add_argument("--out", required=True, type=Path, help="where to write BIAS.json")
    p.add_argument("--style", choices=STYLES, default="think", help="verdict format (default: think)")
    p.add_argument("--strict", action="store_true", help="authors' training format (see `score --strict`)")
    p.set_defaults(func=run_bias)


def first_sample_correct(lists: Sequence[VerifierList], preds: Predictions, style: str = "think",
                         strict: bool = False) -> dict[str, Optional[bool]]:
    """idx -> whether the first sample of the first listwise row names the correct letter
    (None: no listwise prediction for that list)."""
    first: dict[str, list[str]] = {}
    for p in sorted(preds.listwise, key=lambda p: p.row):
        first.setdefault(p.idx, p.completions)
    out: dict[str, Optional[bool]] = {}
    for lst in lists:
        comps = first.get(str(lst.idx))
        if comps is None:
            out[str(lst.idx)] = None
            continue
        verdict = parse_verdict(comps[0], len(lst.candidates), style, strict=strict)
        out[str(lst.idx)] = verdict.ok and verdict.letter == lst.chosen_answer
    return out


def modification_of(lst: VerifierList) -> tuple[str, str, str]:
    """(name, direction, modified candidates) of an Adv list; raises ValueError naming the idx."""
    name = lst.extra.get("modification")
    if not isinstance(name, str) or not name:
        raise ValueError(f"Adv list {lst.idx!r} has no `modification` column: build Adv with "
                         "adversarial.mode=per_modification (combined Adv lists mix two modifications)")
    target = lst.extra.get("modified_candidates")
    if target is None:  # the authors' release: <name>_rejected / <name>_chosen
        base, _, suffix = name.rpartition("_")
        if suffix not in DIRECTION_OF_TARGET or not base:
            raise ValueError(f"Adv list {lst.idx!r}: modification {name!r} has no direction (no "
                             "`modified_candidates` column and no _rejected/_chosen suffix)")
        name, target = base, suffix
    if target not in DIRECTION_OF_TARGET:
        raise ValueError(f"Adv list {lst.idx!r}: modified_candidates must be rejected|chosen, got {target!r}")
    return name, DIRECTION_OF_TARGET[target], target


def _acc(flags: list[Optional[bool]]) -> Optional[float]:
    return sum(bool(f) for f in flags) / len(flags) if flags else None


def _compare(pairs: list[tuple[Optional[bool], Optional[bool]]], heldout_flags: list[Optional[bool]],
             paired: bool) -> dict[str, Any]:
    """Numbers for one group: ``pairs`` (heldout, adv) per Adv list when paired, else the Adv
    flags with None for heldout and ``heldout_flags`` as the baseline."""
    adv = [a for _, a in pairs]
    base = [h for h, _ in pairs] if paired else heldout_flags
    acc_h, acc_a = _acc(base), _acc(adv)
    out = {"n_lists": len(adv), "n_heldout_lists": len(base), "paired": paired,
           "n_missing_predictions": sum(a is None for a in adv),
           "list_acc_heldout": acc_h, "list_acc_adv": acc_a,
           "delta": None if acc_h is None or acc_a is None else acc_a - acc_h,
           "bias_impact_ratio": acc_a / acc_h if acc_h and acc_a is not None else None,
           "flipped_to_wrong": None, "flipped_to_right": None}
    if paired:
        out["flipped_to_wrong"] = sum(bool(h) and not a for h, a in pairs)
        out["flipped_to_right"] = sum(not h and bool(a) for h, a in pairs)
    return out


def bias_report(heldout: Sequence[VerifierList], heldout_preds: Predictions, adv: Sequence[VerifierList],
                adv_preds: Predictions, style: str = "think", strict: bool = False) -> dict[str, Any]:
    """The whole report (see the module docstring); pure, so tests can call it directly."""
    if not heldout or not adv:
        raise ValueError("bias needs Heldout and Adv lists (one of the files has none)")
    h_ok = first_sample_correct(heldout, heldout_preds, style, strict)
    a_ok = first_sample_correct(adv, adv_preds, style, strict)
    groups: dict[str, dict[str, Any]] = {}
    for lst in adv:
        name, direction, target = modification_of(lst)
        g = groups.setdefault(name, {"direction": direction, "modified_candidates": target, "lists": []})
        if g["direction"] != direction:
            raise ValueError(f"modification {name!r} appears as both {g['direction']} and {direction}")
        g["lists"].append(lst)
    h_all = list(h_ok.values())
    per_mod, per_dir = {}, {}
    for name, g in groups.items():
        src = [l.extra.get("heldout_idx") for l in g["lists"]]
        paired = all(isinstance(s, str) and s in h_ok for s in src)
        pairs = [(h_ok[s] if paired else None, a_ok[str(l.idx)]) for s, l in zip(src, g["lists"])]
        per_mod[name] = {"direction": g["direction"], "modified_candidates": g["modified_candidates"],
                         **_compare(pairs, h_all, paired)}
        d = per_dir.setdefault(g["direction"], {"modifications": [], "pairs": [], "paired": True})
        d["modifications"].append(name)
        d["pairs"].extend(pairs)
        d["paired"] = d["paired"] and paired
    directions = {k: {"modifications": v["modifications"], **_compare(v["pairs"], h_all, v["paired"])}
                  for k, v in sorted(per_dir.items())}
    return {
        "style": style, "strict": strict,
        "heldout": {"n_lists": len(h_all), "list_acc": _acc(h_all),
                    "n_missing_predictions": sum(f is None for f in h_all)},
        "adv": {"n_lists": len(a_ok), "list_acc": _acc(list(a_ok.values())),
                "n_missing_predictions": sum(f is None for f in a_ok.values())},
        "by_modification": per_mod, "by_direction": directions,
        "definition": "bias_impact_ratio = ListAcc(Adv lists of the modification) / ListAcc(the Heldout "
                      "lists they were made from); delta = the difference; first sample, missing or "
                      "unparsable = wrong",
    }


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _table(report: dict[str, Any]) -> Table:
    t = Table(title=f"aletheia-eval bias (Heldout ListAcc {_fmt(report['heldout']['list_acc'])} over "
                    f"{report['heldout']['n_lists']} lists)")
    cols = ("modification", "direction", "n_lists", "list_acc_heldout", "list_acc_adv", "delta",
            "bias_impact_ratio", "flipped_to_wrong", "flipped_to_right")
    for c in cols:
        t.add_column(c, justify="left" if c in cols[:2] else "right")
    rows = [(n, m) for n, m in report["by_modification"].items()]
    rows += [(f"all {d}", {"direction": d, **m}) for d, m in report["by_direction"].items()]
    for name, m in rows:
        t.add_row(name, *(_fmt(m[c]) for c in cols[1:]))
    return t


def run_bias(args: argparse.Namespace) -> int:
    from aletheia_ray.data.lists import load_lists  # validates and names bad rows

    heldout, adv = load_lists(args.heldout[0]), load_lists(args.adv[0])
    report = bias_report(heldout, load_predictions(args.heldout[1]), adv, load_predictions(args.adv[1]),
                         style=args.style, strict=args.strict)
    report = {"heldout_data": str(args.heldout[0]), "heldout_predictions": str(args.heldout[1]),
              "adv_data": str(args.adv[0]), "adv_predictions": str(args.adv[1]), **report}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    console = Console(file=sys.stdout, width=160)
    console.print(_table(report))
    console.print(f"wrote {args.out}")
    return 0
