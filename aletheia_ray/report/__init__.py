"""``aletheia-eval report``: a self-contained report folder from score files and training runs.

``write_report(scores, runs, out)`` writes ``out/report.md``, ``out/report.html`` (images embedded
as base64, so the file opens on its own; the PNGs sit beside it too), ``out/*.png``,
``out/report.json`` (every table as data: columns, formats, rows of raw values, plus the run
costs) and ``out/figures.json`` (every figure's panels and the series plotted). Either list may be
empty, not both. Keying of rows and columns: ``aletheia_ray.report.inputs``; tables:
``report.tables``; figures: ``report.figures``; cost: ``aletheia_ray.cost``.
"""
from __future__ import annotations

import base64
import html
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Sequence

from aletheia_ray.report.figures import draw, run_figures, score_figures
from aletheia_ray.report.inputs import load_runs, load_scores
from aletheia_ray.report.tables import run_cost, run_table, score_tables, tables_json, to_html, to_markdown

__all__ = ["write_report"]

CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
       "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:3px 8px}"
       "td.num{text-align:right;font-variant-numeric:tabular-nums}th{background:#eee}"
       "p.note{font-size:85%;color:#555;margin:.2em 0}img{max-width:100%}")


def write_report(scores: Sequence[str | Path] = (), runs: Sequence[str | Path] = (), out: str | Path = "report",
                 *, labels: Optional[Sequence[str]] = None, splits: Optional[Sequence[str]] = None,
                 cpu_price: Optional[float] = None, gpu_price: Optional[float] = None,
                 title: str = "Aletheia-Ray evaluation report") -> Path:
    """Write the report folder ``out``; returns the path of ``report.md``."""
    if not scores and not runs:
        raise ValueError("a report needs at least one score file or one run directory")
    score_inputs = load_scores([Path(p) for p in scores], labels, splits)
    run_inputs = load_runs([Path(p) for p in runs])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    costs = {r.label: run_cost(r, cpu_price, gpu_price) for r in run_inputs}
    heldout = {s.label: s.metrics["list_acc"] for s in score_inputs
               if s.split == "Heldout" and s.metrics.get("list_acc") is not None}
    tables = score_tables(score_inputs)
    rt = run_table(run_inputs, costs)
    if rt is not None:
        tables.append(rt)
    figures = score_figures(score_inputs) + run_figures(run_inputs, costs, heldout)
    for spec in figures:
        draw(spec, out)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sources = [f"score file: {s.path} (model {s.label}, split {s.split})" for s in score_inputs]
    sources += [f"run: {r.path} ({r.label}, {len(r.rows)} steps)" for r in run_inputs]
    md = [f"# {title}", "", f"Written {stamp} by `aletheia-eval report`.", ""] + [f"- {s}" for s in sources] + [""]
    md += ["## Tables", ""] + [to_markdown(t) for t in tables]
    md += ["## Figures", ""] + [f"### {f['title']}\n\n![{f['title']}]({f['file']})\n" for f in figures]
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")
    e = html.escape
    body = [f"<h1>{e(title)}</h1><p>Written {e(stamp)} by <code>aletheia-eval report</code>.</p><ul>"]
    body += [f"<li>{e(s)}</li>" for s in sources] + ["</ul><h2>Tables</h2>"] + [to_html(t) for t in tables]
    body.append("<h2>Figures</h2>")
    for f in figures:
        data = base64.b64encode((out / f["file"]).read_bytes()).decode("ascii")
        body.append(f"<h3>{e(f['title'])}</h3><img alt=\"{e(f['file'])}\" src=\"data:image/png;base64,{data}\">")
    (out / "report.html").write_text(f"<!DOCTYPE html><html><head><meta charset=utf-8><title>{e(title)}</title>"
                                     f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n",
                                     encoding="utf-8")
    (out / "report.json").write_text(json.dumps({"tables": tables_json(tables), "costs": costs,
                                                 "figures": [f["file"] for f in figures]}, indent=1) + "\n",
                                     encoding="utf-8")
    (out / "figures.json").write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    return out / "report.md"
