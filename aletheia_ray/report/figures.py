"""The report's figures: built as data first (``figures.json``: per figure its file, title and panels,
each panel's series with their x/y arrays), then drawn from that data with matplotlib (Agg).

Figures from score files: ``sc_at_k.png`` (ListAcc of the majority vote vs K, a panel per split,
the random baseline dashed), ``list_acc_by_split.png``, ``list_acc_by_language.png``,
``list_acc_by_list_size.png`` (grouped bars, random included). From run directories:
``training_curves.png`` (reward, ListAcc train and held-out, parse rate, KL), ``step_time.png``
(stacked ``timing_s/*`` stages per step, a panel per run: every stage the step timer measures,
which add up to ``timing_s/step``; ``NOT_STACKED`` lists the timings left out: the total, the
engines' generation time inside ``gen_wait``, the held-out evaluation after the step, the sandbox
pool's time inside ``reward``) and ``pareto.png`` ($ per step vs held-out ListAcc, the frontier drawn).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Sequence

from aletheia_ray.report.inputs import SPLIT_ORDER, RunInput, ScoreInput, ordered
from aletheia_ray.report.tables import RANDOM

# the total; the engines' generation time (inside gen_wait); held-out evaluation (after the step, on
# evaluation steps); the sandbox pool's own time (inside reward)
NOT_STACKED = ("timing_s/step", "timing_s/gen", "timing_s/eval", "timing_s/sandbox")
CURVES = (("Reward (mean)", "reward", (("reward/mean", "train"),)),
          ("ListAcc", "ListAcc", (("reward/list_acc", "train"), ("eval/list_acc", "held-out"))),
          ("Parse rate", "parse rate", (("reward/parse_rate", "train"), ("eval/parse_rate", "held-out"))),
          ("KL to the reference", "KL", (("actor/kl", "train"),)))


def _panel(title: str, kind: str, xlabel: str, ylabel: str, series: list, hlines: Optional[list] = None,
           categories: Optional[list] = None) -> dict[str, Any]:
    panel = {"title": title, "kind": kind, "xlabel": xlabel, "ylabel": ylabel, "series": series,
             "hlines": hlines or []}
    if categories is not None:
        panel["categories"] = categories
    return panel


def _series(label: str, x: Sequence, y: Sequence) -> dict[str, Any]:
    return {"label": label, "x": list(x), "y": [None if v is None else float(v) for v in y]}


def score_figures(scores: Sequence[ScoreInput]) -> list[dict[str, Any]]:
    if not scores:
        return []
    labels = ordered([s.label for s in scores])
    splits = ordered([s.split for s in scores], SPLIT_ORDER)
    cell = {(s.label, s.split): s for s in scores}
    random = {}
    for s in scores:
        random.setdefault(s.split, s.metrics.get("random_baseline_list_acc"))
    panels = []
    for split in splits:
        series = []
        for label in labels:
            sc = (cell[(label, split)].metrics.get("sc_at_k") or {}) if (label, split) in cell else {}
            ks = sorted(int(k) for k in sc)
            if ks:
                series.append(_series(label, ks, [sc[str(k)] for k in ks]))
        hl = [{"label": RANDOM, "y": random[split]}] if random[split] is not None else []
        panels.append(_panel(f"SC@K, {split}", "line", "K (samples voting)", "ListAcc", series, hl))
    figs = [{"file": "sc_at_k.png", "title": "Self-consistency: ListAcc of the majority vote of K samples",
             "panels": panels}]
    bars = [_series(label, splits, [cell[(label, sp)].metrics.get("list_acc") if (label, sp) in cell else None
                                     for sp in splits]) for label in labels]
    bars.append(_series(RANDOM, splits, [random[sp] for sp in splits]))
    figs.append({"file": "list_acc_by_split.png", "title": "ListAcc by split",
                 "panels": [_panel("ListAcc by split", "bar", "split", "ListAcc", bars, categories=splits)]})
    for key, file, name in (("by_language", "list_acc_by_language.png", "language"),
                            ("by_num_candidates", "list_acc_by_list_size.png", "#candidates")):
        panels = []
        for split in splits:
            have = [lb for lb in labels if (lb, split) in cell]
            groups = ordered([g for lb in have for g in cell[(lb, split)].metrics[key]])
            if key == "by_num_candidates":
                groups = sorted(groups, key=lambda g: (not g.isdigit(), int(g) if g.isdigit() else 0, g))
            series = [_series(lb, groups, [(cell[(lb, split)].metrics[key].get(g) or {}).get("list_acc")
                                           for g in groups]) for lb in have]
            first = cell[(have[0], split)].metrics[key]
            series.append(_series(RANDOM, groups, [(first.get(g) or {}).get("random_baseline_list_acc")
                                                   for g in groups]))
            panels.append(_panel(f"{split}: ListAcc by {name}", "bar", name, "ListAcc", series, categories=groups))
        figs.append({"file": file, "title": f"ListAcc by {name}", "panels": panels})
    return figs


def run_figures(runs: Sequence[RunInput], costs: dict[str, dict[str, Any]],
                heldout: dict[str, float]) -> list[dict[str, Any]]:
    """``heldout``: run label -> held-out ListAcc from score files, used when a run logged none."""
    if not runs:
        return []
    panels = []
    for title, ylabel, keys in CURVES:
        series = []
        for run in runs:
            for key, what in keys:
                steps, values = run.series(key)
                if steps:
                    series.append(_series(f"{run.label}: {what} ({key})", steps, values))
                elif key.startswith("eval/") and run.summary.get(key) is not None and run.rows:
                    last = run.summary.get("final_step", run.rows[-1]["step"])  # end-of-run evaluation
                    series.append(_series(f"{run.label}: {what} (summary.json {key})", [last], [run.summary[key]]))
        hlines = []
        if ylabel == "ListAcc":  # the held-out set's chance level, as the trainer logs it
            for run in runs:
                _, chance = run.series("eval/random_baseline")
                if chance or run.summary.get("eval/random_baseline") is not None:
                    hlines.append({"label": f"{run.label}: random (eval/random_baseline)",
                                   "y": float(chance[-1] if chance else run.summary["eval/random_baseline"])})
        panels.append(_panel(title, "line", "step", ylabel, series, hlines))
    figs = [{"file": "training_curves.png", "title": "Training curves (metrics.jsonl)", "panels": panels}]
    panels = []
    for run in runs:
        stages = ordered([k for r in run.rows for k in r if k.startswith("timing_s/") and k not in NOT_STACKED])
        steps = [r["step"] for r in run.rows]
        series = [_series(k.removeprefix("timing_s/"), steps, [float(r.get(k) or 0.0) for r in run.rows])
                  for k in stages]
        panels.append(_panel(f"{run.label}: seconds per step by stage", "stack", "step", "seconds", series))
    figs.append({"file": "step_time.png", "title": "Step time breakdown (timing_s/*)", "panels": panels})
    points = []
    for run in runs:
        acc = run.heldout_list_acc()
        acc = heldout.get(run.label) if acc is None else acc
        usd = costs[run.label].get("usd_per_step")
        if acc is not None and usd is not None:
            points.append((run.label, usd, acc))
    if points:
        frontier, best = [], -math.inf
        for _, x, y in sorted(points, key=lambda p: (p[1], -p[2])):
            if y > best:
                frontier.append((x, y))
                best = y
        priced = ordered([costs[lb]["priced_as"] for lb, _, _ in points])
        series = [_series(lb, [x], [y]) for lb, x, y in points]
        series.append(_series("Pareto frontier", [x for x, _ in frontier], [y for _, y in frontier]))
        figs.append({"file": "pareto.png", "title": "Cost vs held-out ListAcc", "panels": [
            _panel("Cost vs held-out ListAcc", "scatter", "$ per training step (" + "; ".join(priced) + ")",
                   "held-out ListAcc", series)]})
    return figs


def draw(spec: dict[str, Any], out_dir: Path) -> Path:
    """Draw one figure spec to ``out_dir / spec['file']`` (a panel per spec panel)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = spec["panels"]
    ncols = 1 if len(panels) == 1 else 2
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.4 * ncols, 4.0 * nrows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        _draw_panel(ax, panel)
    for ax in list(axes.flat)[len(panels):]:
        fig.delaxes(ax)
    fig.suptitle(_t(spec["title"]))
    fig.tight_layout()
    path = out_dir / spec["file"]
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _t(text: Any) -> str:
    return str(text).replace("$", r"\$")  # a literal dollar, not matplotlib mathtext


def _draw_panel(ax, panel: dict[str, Any]) -> None:
    from matplotlib.ticker import MaxNLocator

    kind, series = panel["kind"], panel["series"]
    if kind == "bar":
        cats = panel["categories"]
        width = 0.8 / max(1, len(series))
        for i, s in enumerate(series):
            xs = [c + (i - (len(series) - 1) / 2) * width for c in range(len(cats))]
            ax.bar(xs, [math.nan if v is None else v for v in s["y"]], width, label=_t(s["label"]),
                   hatch="//" if s["label"] == RANDOM else None, alpha=0.5 if s["label"] == RANDOM else 1.0)
        ax.set_xticks(range(len(cats)), [str(c) for c in cats])
    elif kind == "stack":
        bottom = [0.0] * len(series[0]["x"]) if series else []
        for s in series:
            ax.bar(s["x"], s["y"], bottom=bottom, label=_t(s["label"]))
            bottom = [b + v for b, v in zip(bottom, s["y"])]
    elif kind == "scatter":
        for s in series:
            if s["label"] == "Pareto frontier":
                ax.step(s["x"], s["y"], where="post", linestyle=":", color="grey", label=_t(s["label"]))
            else:
                ax.scatter(s["x"], s["y"], label=_t(s["label"]))
                ax.annotate(_t(s["label"]), (s["x"][0], s["y"][0]), fontsize=7)
    else:
        for s in series:
            ax.plot(s["x"], s["y"], marker="o" if len(s["x"]) < 30 else None, label=_t(s["label"]))
        if series and all(x > 0 for s in series for x in s["x"]) and panel["xlabel"].startswith("K"):
            ax.set_xscale("log", base=2)
            ks = sorted({x for s in series for x in s["x"]})
            ax.set_xticks(ks, [str(k) for k in ks])
    for h in panel["hlines"]:
        ax.axhline(h["y"], linestyle="--", color="black", linewidth=1, label=_t(h["label"]))
    if not series:
        ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(_t(panel["title"]), fontsize=10)
    ax.set_xlabel(_t(panel["xlabel"]))
    ax.set_ylabel(_t(panel["ylabel"]))
    if panel["xlabel"] == "step":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if series or panel["hlines"]:
        ax.legend(fontsize=7)
