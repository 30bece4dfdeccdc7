"""``aletheia-eval score``: score verifier predictions against lists, write METRICS.json.

Exit codes: 0 scored; 2 bad input (a file missing or malformed); 1 with ``--require-complete``
when some list lacks predictions (METRICS.json is still written; the message names the first
few idx and the count).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from aletheia_ray.evaluation import load_predictions, score_predictions
from aletheia_ray.metrics import TAU_UNDEFINED_MODES
from aletheia_ray.prompts import STYLES


def register(subparsers) -> None:
    p = subparsers.add_parser("score", help="score predictions JSONL against verifier lists",
                              description=__doc__)
    p.add_argument("--data", required=True, type=Path, help="verifier lists (JSONL or parquet)")
    p.add_argument("--predictions", required=True, type=Path,
                   help='JSONL rows {"idx", "completions": [...]} or {"idx", "pair": [i, j], "completions": [...]}')
    p.add_argument("--out", required=True, type=Path, help="where to write METRICS.json")
    p.add_argument("--style", choices=STYLES, default="think", help="verdict format (default: think)")
    p.add_argument("--strict", action="store_true",
                   help="authors' training format: nothing but the box after </think> (or at the end)")
    p.add_argument("--tau-undefined", choices=TAU_UNDEFINED_MODES, default="minus_one",
                   help="a list whose Kendall tau is undefined scores -1 (default, as the authors) or is skipped")
    p.add_argument("--require-complete", action="store_true",
                   help="exit 1 (after writing METRICS.json) naming the lists a prediction kind in the file "
                        "does not cover: no listwise row, or not all pairs")
    p.set_defaults(func=run_score)


NAMED_MISSING = 5  # idx values named in the --require-complete error


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _summary_tables(m: dict[str, Any]) -> list[Table]:
    overall = Table(title="aletheia-eval score")
    overall.add_column("metric")
    overall.add_column("value", justify="right")
    for key in ("n_lists", "n_lists_in_data", "list_acc", "list_acc_over_data", "n_lists_missing_listwise",
                "list_acc_mean_over_samples", "random_baseline_list_acc", "parse_rate", "kendall_tau_b",
                "kendall_tau_undefined_lists", "samples_per_pair", "pair_acc", "n_pairs"):
        if m.get(key) is not None:
            overall.add_row(key, _fmt(m[key]))
    for k, v in (m["sc_at_k"] or {}).items():
        overall.add_row(f"sc_at_k[{k}]", _fmt(v))
    for kind, info in m["problems"].items():
        if info["count"]:
            overall.add_row(f"problems/{kind}", f"[red]{info['count']}[/red]")
    if m["incomplete_lists"]["count"]:
        overall.add_row("incomplete_lists", f"[red]{m['incomplete_lists']['count']}[/red]")
    groups = Table(title="breakdown")
    for col in ("group", "n_lists", "list_acc", "over_data", "random", "parse_rate", "kendall_tau_b"):
        groups.add_column(col, justify="left" if col == "group" else "right")
    for section, label in (("by_language", "lang"), ("by_num_candidates", "n")):
        for name, b in m[section].items():
            groups.add_row(f"{label}={name}", _fmt(b["n_lists"]), _fmt(b.get("list_acc")),
                           _fmt(b.get("list_acc_over_data")), _fmt(b.get("random_baseline_list_acc")), _fmt(b["parse_rate"]), _fmt(b.get("kendall_tau_b")))
    return [overall, groups]


def run_score(args: argparse.Namespace) -> int:
    from aletheia_ray.data.lists import load_lists  # the data loader validates and names bad rows

    lists = load_lists(args.data)
    metrics = score_predictions(lists, load_predictions(args.predictions), style=args.style,
                                strict=args.strict, tau_undefined=args.tau_undefined)
    metrics = {"data": str(args.data), "predictions": str(args.predictions), **metrics}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    console = Console(file=sys.stdout)
    for table in _summary_tables(metrics):
        console.print(table)
    console.print(f"wrote {args.out}")
    missing = metrics["incomplete_lists"]
    if args.require_complete and missing["count"]:
        named = ", ".join(missing["items"][:NAMED_MISSING])
        more = ", ..." if missing["count"] > NAMED_MISSING else ""
        print(f"aletheia-eval score: error: --require-complete: {missing['count']} of {metrics['n_lists_in_data']} "
              f"lists in {args.data} lack predictions (no listwise row or not all pairs): {named}{more}",
              file=sys.stderr)
        return 1
    return 0
