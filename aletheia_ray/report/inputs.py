"""Inputs of a report: ``aletheia-eval score`` / ``run`` metrics files and training run directories.

Keying (rows = models, columns = splits):
  label  ``--label`` for that file, else the file's ``label`` key, else ``run.model`` (written by
         ``aletheia-eval run``), else the file's folder name when it is called ``metrics.json``, else
         the file's stem.
  split  ``--split`` for that file, else the file's ``split`` key, else the first of heldout /
         held_out / strong / hard / adv found as a ``_``/``-``/``.``-separated word of the data file
         name (case-insensitive; shown as Heldout / Strong / Hard / Adv), else the data file's stem.
Two files with the same (label, split) are an error naming both. Columns are ordered Heldout,
Strong, Hard, Adv, then other splits in first-seen order; rows in first-seen order.

A run directory holds ``metrics.jsonl`` (one row per step; a step logged twice, e.g. after a
resume, keeps its last row), ``config.yaml`` and optionally ``summary.json``; its label is
``logging.run_name`` or the directory name.
"""
from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from aletheia_ray.tracking import read_metrics

CANONICAL_SPLITS = {"heldout": "Heldout", "held_out": "Heldout", "strong": "Strong", "hard": "Hard", "adv": "Adv"}
SPLIT_ORDER = ["Heldout", "Strong", "Hard", "Adv"]
REQUIRED_SCORE_KEYS = ("list_acc", "kendall_tau_b", "parse_rate", "sc_at_k", "random_baseline_list_acc",
                       "by_language", "by_num_candidates", "n_lists", "n_lists_in_data")


@dataclass
class ScoreInput:
    path: Path
    label: str
    split: str
    metrics: dict[str, Any]


@dataclass
class RunInput:
    path: Path
    label: str
    config: dict[str, Any]
    rows: list[dict[str, Any]]  # metrics.jsonl, one per step, sorted by step
    summary: dict[str, Any] = field(default_factory=dict)

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """(steps, values) of the rows that logged ``key`` with a finite number."""
        pts = [(r["step"], float(r[key])) for r in self.rows if _finite(r.get(key))]
        return [s for s, _ in pts], [v for _, v in pts]

    def median_step_s(self) -> Optional[float]:
        _, values = self.series("timing_s/step")
        return statistics.median(values) if values else None

    def heldout_list_acc(self) -> Optional[float]:
        """The last ``eval/list_acc`` logged in metrics.jsonl, else the one in summary.json."""
        _, values = self.series("eval/list_acc")
        if values:
            return values[-1]
        value = self.summary.get("eval/list_acc")
        return float(value) if _finite(value) else None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def split_from_name(name: str) -> Optional[str]:
    words = [w.lower() for w in re.split(r"[_\-.\s/]+", name) if w]
    joined = "_".join(words)
    if "held_out" in joined:
        return "Heldout"
    for word in words:
        if word in CANONICAL_SPLITS:
            return CANONICAL_SPLITS[word]
    return None


def _default_label(path: Path, metrics: dict[str, Any]) -> str:
    if isinstance(metrics.get("label"), str) and metrics["label"]:
        return metrics["label"]
    model = (metrics.get("run") or {}).get("model") if isinstance(metrics.get("run"), dict) else None
    if isinstance(model, str) and model:
        return model
    return path.parent.name if path.name == "metrics.json" and path.parent.name else path.stem


def _default_split(metrics: dict[str, Any]) -> str:
    if isinstance(metrics.get("split"), str) and metrics["split"]:
        return CANONICAL_SPLITS.get(metrics["split"].lower(), metrics["split"])
    data = metrics.get("data")
    if not isinstance(data, str) or not data:
        return "all"
    return split_from_name(Path(data).name) or Path(data).name.split(".")[0]


def _per_file(values: Optional[Sequence[str]], n: int, flag: str) -> list[Optional[str]]:
    if not values:
        return [None] * n
    if len(values) != n:
        raise ValueError(f"{flag} takes one value per score file: got {len(values)} for {n} files")
    return list(values)


def load_scores(paths: Sequence[Path], labels: Optional[Sequence[str]] = None,
                splits: Optional[Sequence[str]] = None) -> list[ScoreInput]:
    labels_, splits_ = _per_file(labels, len(paths), "--label"), _per_file(splits, len(paths), "--split")
    out: list[ScoreInput] = []
    seen: dict[tuple[str, str], Path] = {}
    for path, label, split in zip(map(Path, paths), labels_, splits_):
        if not path.is_file():
            raise FileNotFoundError(f"score file not found: {path}")
        try:
            metrics = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
        missing = [k for k in REQUIRED_SCORE_KEYS if not isinstance(metrics, dict) or k not in metrics]
        if missing:
            raise ValueError(f"{path}: not an 'aletheia-eval score' metrics file (missing keys {missing})")
        item = ScoreInput(path, label or _default_label(path, metrics),
                          CANONICAL_SPLITS.get((split or "").lower(), split) or _default_split(metrics), metrics)
        key = (item.label, item.split)
        if key in seen:
            raise ValueError(f"{seen[key]} and {path} both give model {item.label!r} on split {item.split!r}; "
                             "pass --label / --split to tell them apart")
        seen[key] = path
        out.append(item)
    return out


def ordered(values: Sequence[str], order: Sequence[str] = ()) -> list[str]:
    """Unique values: those in ``order`` first (in that order), then the rest in first-seen order."""
    uniq = list(dict.fromkeys(values))
    return [v for v in order if v in uniq] + [v for v in uniq if v not in order]


def load_run(path: Path) -> RunInput:
    path = Path(path)
    metrics_path, config_path = path / "metrics.jsonl", path / "config.yaml"
    for p in (metrics_path, config_path):
        if not p.is_file():
            raise FileNotFoundError(f"run directory {path}: {p.name} not found")
    by_step: dict[int, dict[str, Any]] = {}
    for n, row in enumerate(read_metrics(path), start=1):  # a non-JSON line: ValueError naming file and line
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            raise ValueError(f"{metrics_path}: record {n} has no integer 'step'")
        by_step[row["step"]] = row
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{config_path}: expected a mapping")
    summary_path = path / "summary.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}
    name = (config.get("logging") or {}).get("run_name") or path.resolve().name
    return RunInput(path, str(name), config, [by_step[s] for s in sorted(by_step)], summary)


def load_runs(paths: Sequence[Path]) -> list[RunInput]:
    runs = [load_run(p) for p in paths]
    labels = [r.label for r in runs]
    for r in runs:  # two runs with the same name: tell them apart by their path
        if labels.count(r.label) > 1:
            r.label = str(r.path)
    return runs
