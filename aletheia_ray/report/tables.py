"""The report's tables as data (``report.json``), rendered to Markdown and HTML from the same data.

ListAcc is ``list_acc`` (first sample per list, over the lists with a listwise prediction: the same
lists as the random baseline and SC@K; a file with fewer lists than its data is flagged in a note);
the random row is the scorer's ``random_baseline_list_acc`` (mean over lists of 1/#candidates) of
the split's first file. Kendall tau-b is the scorer's (pairwise predictions only).
"""
from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence

from aletheia_ray import cost as C
from aletheia_ray.report.inputs import SPLIT_ORDER, RunInput, ScoreInput, ordered

RANDOM = "random (uniform guess)"


@dataclass
class Table:
    id: str
    title: str
    columns: list[str]
    formats: list[str]  # per column: pct, tau, int, sec, usd, float, text
    rows: list[dict[str, Any]] = field(default_factory=list)  # {"label", "cells": [...], "format"?: one for the row}
    notes: list[str] = field(default_factory=list)
    corner: str = "model"

    def add(self, label: str, cells: Sequence[Any], fmt: Optional[str] = None) -> None:
        self.rows.append({"label": label, "cells": list(cells), **({"format": fmt} if fmt else {})})


def fmt_value(value: Any, fmt: str) -> str:
    if value is None:
        return "–"
    if fmt == "pct":
        return f"{100 * value:.1f}"
    if fmt == "tau":
        return f"{value:.3f}"
    if fmt == "int":
        return str(int(value))
    if fmt == "sec":
        return f"{value:.2f}"
    if fmt == "usd":
        return f"{value:.3g}"
    if fmt == "float":
        return f"{value:.4g}"
    return str(value)


def cell_texts(table: Table, row: dict[str, Any]) -> list[str]:
    return [fmt_value(v, row.get("format") or f) for v, f in zip(row["cells"], table.formats)]


def to_markdown(table: Table) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    head = [table.corner, *table.columns]
    lines = [f"### {table.title}", "", "| " + " | ".join(map(esc, head)) + " |",
             "|---|" + "".join(":---|" if f == "text" else "---:|" for f in table.formats)]
    for row in table.rows:
        lines.append("| " + " | ".join(esc(t) for t in [row["label"], *cell_texts(table, row)]) + " |")
    lines += [""] + [f"*{esc(n)}*  " for n in table.notes]
    return "\n".join(lines).rstrip() + "\n"


def to_html(table: Table) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in [table.corner, *table.columns])
    body = "".join("<tr><td>" + e(row["label"]) + "</td>" + "".join(f"<td{'' if f == 'text' else ' class=num'}>{e(t)}</td>"
                                                                    for t, f in zip(cell_texts(table, row), table.formats)) + "</tr>"
                   for row in table.rows)
    notes = "".join(f"<p class=note>{e(n)}</p>" for n in table.notes)
    return f"<h3>{e(table.title)}</h3>\n<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{notes}\n"


def _by_split(scores: Sequence[ScoreInput]) -> tuple[list[str], list[str], dict[tuple[str, str], ScoreInput]]:
    labels = ordered([s.label for s in scores])
    splits = ordered([s.split for s in scores], SPLIT_ORDER)
    return labels, splits, {(s.label, s.split): s for s in scores}


def _random_row(splits: list[str], scores: Sequence[ScoreInput]) -> list[Optional[float]]:
    first = {}
    for s in scores:
        first.setdefault(s.split, s.metrics.get("random_baseline_list_acc"))
    return [first.get(split) for split in splits]


def score_tables(scores: Sequence[ScoreInput]) -> list[Table]:
    if not scores:
        return []
    labels, splits, cell = _by_split(scores)
    inputs = Table("inputs", "Score files", ["split", "file", "data", "lists scored", "lists in data",
                                             "samples/list", "pairs"],
                   ["text", "text", "text", "int", "int", "int", "int"])
    for s in scores:
        m = s.metrics
        inputs.add(s.label, [s.split, str(s.path), m.get("data"), m["n_lists"], m["n_lists_in_data"],
                             m.get("samples_per_list"), m.get("n_pairs")])
    main = {key: Table(key, title, splits, [fmt] * len(splits)) for key, title, fmt in (
        ("list_acc", "ListAcc (%) by split", "pct"), ("kendall_tau_b", "Kendall τ-b by split", "tau"),
        ("parse_rate", "Parse rate (%) by split", "pct"))}
    for label in labels:
        for key, table in main.items():
            table.add(label, [cell[(label, sp)].metrics.get(key) if (label, sp) in cell else None for sp in splits])
    main["list_acc"].add(RANDOM, _random_row(splits, scores))
    incomplete = [f"{s.label} on {s.split}: {s.metrics['n_lists']} of {s.metrics['n_lists_in_data']} lists have "
                  "predictions" for s in scores if s.metrics["n_lists"] != s.metrics["n_lists_in_data"]]
    main["list_acc"].notes = ["first sample per list; random = mean over the split's lists of 1/#candidates"] + incomplete
    main["kendall_tau_b"].notes = ["pairwise predictions only (– : the file has none)"]
    tables = [inputs, *main.values()]
    ks = sorted({int(k) for s in scores for k in (s.metrics.get("sc_at_k") or {})})
    if ks:
        sc = Table("sc_at_k", "SC@K: ListAcc (%) of the majority vote over the first K samples",
                   [f"SC@{k}" for k in ks], ["pct"] * len(ks), corner="model · split")
        for s in _ordered_scores(scores, labels, splits):
            sc.add(f"{s.label} · {s.split}", [(s.metrics.get("sc_at_k") or {}).get(str(k)) for k in ks])
        tables.append(sc)
    for key, title, name in (("by_language", "ListAcc (%) by language", "language"),
                             ("by_num_candidates", "ListAcc (%) by list size (#candidates)", "list size")):
        tables.append(_breakdown(scores, labels, splits, key, title, name))
    return tables


def _ordered_scores(scores, labels, splits) -> list[ScoreInput]:
    cell = {(s.label, s.split): s for s in scores}
    return [cell[(lb, sp)] for sp in splits for lb in labels if (lb, sp) in cell]


def _breakdown(scores, labels, splits, key: str, title: str, name: str) -> Table:
    groups = ordered([g for s in scores for g in s.metrics[key]])
    if key == "by_num_candidates":
        groups = sorted(groups, key=lambda g: (not g.isdigit(), int(g) if g.isdigit() else 0, g))
    table = Table(key, title, groups, ["pct"] * len(groups), corner=f"model · split \\ {name}")
    for split in splits:
        rows = [s for s in _ordered_scores(scores, labels, [split])]
        for s in rows:
            table.add(f"{s.label} · {split}", [(s.metrics[key].get(g) or {}).get("list_acc") for g in groups])
        first = rows[0].metrics[key]
        table.add(f"{RANDOM} · {split}", [(first.get(g) or {}).get("random_baseline_list_acc") for g in groups])
        table.add(f"lists · {split}", [(first.get(g) or {}).get("n_lists") for g in groups], fmt="int")
    return table


def run_cost(run: RunInput, cpu_price: Optional[float] = None, gpu_price: Optional[float] = None) -> dict[str, Any]:
    """Devices, median step seconds and $ per step of a run (``error`` when the config cannot be priced)."""
    step_s = run.median_step_s()
    try:
        kind, count = C.devices_of(run.config)
    except (ValueError, KeyError) as exc:
        return {"step_s": step_s, "error": str(exc)}
    price = gpu_price if kind == "GPU" else cpu_price
    price = C.default_price(kind) if price is None else price
    out = {"step_s": step_s, "kind": kind, "count": count, "price_per_hour": price,
           "priced_as": C.price_label(kind, price)}
    if step_s is not None:
        out.update(device_hours_per_step=C.device_hours_per_step(step_s, count),
                   usd_per_step=C.cost_per_step(step_s, kind, count, price))
    return out


def _last(run: RunInput, key: str) -> Optional[float]:
    _, values = run.series(key)
    return values[-1] if values else None


def run_table(runs: Sequence[RunInput], costs: dict[str, dict[str, Any]]) -> Optional[Table]:
    if not runs:
        return None
    table = Table("runs", "Training runs: cost per step and last logged values",
                  ["steps", "median step (s)", "devices", "device-hours/step", "$/step", "priced as",
                   "reward (last)", "train ListAcc (%, last)", "held-out ListAcc (%)"],
                  ["int", "sec", "text", "float", "usd", "text", "float", "pct", "pct"], corner="run")
    for run in runs:
        c = costs[run.label]
        devices = f"{c['count']:g} {c['kind']}" if "kind" in c else None
        table.add(run.label, [len(run.rows), c["step_s"], devices, c.get("device_hours_per_step"),
                              c.get("usd_per_step"), c.get("priced_as"), _last(run, "reward/mean"),
                              _last(run, "reward/list_acc"), run.heldout_list_acc()])
        if "error" in c:
            table.notes.append(f"{run.label}: not priced: {c['error']}")
    table.notes.append("median of timing_s/step over the logged steps; $/step = devices x step hours x price "
                       "(aletheia_ray/cost.py)")
    return table


def tables_json(tables: Sequence[Table]) -> list[dict[str, Any]]:
    return [asdict(t) for t in tables]
