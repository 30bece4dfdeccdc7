"""Held-out evaluation during training: when it runs, what it reports, which checkpoint is best (no Ray).

    due = eval_due(step, every_steps=10, total_steps=30)            # steps 10, 20, 30
    metrics = verdict_eval_metrics(gens, answers, k=4, ...)         # eval/list_acc, eval/sc_at_4, ...
    best = BestCheckpoint(output_dir, "eval/list_acc", "max")
    best.observe(step, metrics); best.on_save(step)                 # -> <output_dir>/checkpoints/best.json

``eval/<accuracy>`` is the mean over all k samples of every item (the expected single-sample
accuracy; unparseable = wrong); ``eval/sc_at_<k>`` the majority vote over each item's k samples
(``metrics.sc_at_k``), ``eval/pass_at_<k>`` (code) an item with any passing sample.

``best.json`` names the best checkpoint by the latest evaluation at or before each save, and the
last one. Checkpoint retention asks ``best_step(output_dir)`` which step directory it must keep.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional, Sequence

from aletheia_ray import metrics as M

BEST_FILE = "best.json"  # in <output_dir>/checkpoints/
EVAL_MODES = ("max", "min")


def eval_due(step: int, *, every_steps: int, total_steps: int) -> bool:
    """Evaluate after ``step``: every ``every_steps`` steps (0: never in between) and after the last."""
    return step == total_steps or (every_steps > 0 and step % every_steps == 0)


def _samples_by_item(gens: Sequence[Any], num_items: int) -> list[list[Any]]:
    by_item: dict[int, list] = defaultdict(list)
    for g in gens:
        by_item[g.prompt_index].append(g)
    missing = [i for i in range(num_items) if not by_item.get(i)]
    if missing:
        raise ValueError(f"held-out evaluation: no sample for {len(missing)} items (first: position {missing[0]})")
    return [by_item[i] for i in range(num_items)]


def verdict_eval_metrics(gens: Sequence[Any], answers: Sequence[str], *, k: int, accuracy_key: str, noun: str,
                         random_baseline: float) -> dict[str, float]:
    """Scored verdict samples (``meta``: letter, correct, parsed_ok; grouped by ``prompt_index``)."""
    per_item = _samples_by_item(gens, len(answers))
    out = {accuracy_key: M.safe_mean([float(g.meta["correct"]) for g in gens]),
           "eval/parse_rate": M.safe_mean([float(g.meta["parsed_ok"]) for g in gens]),
           "eval/random_baseline": random_baseline, f"eval/num_{noun}": float(len(answers)),
           "eval/num_samples": float(k)}
    if k > 1:
        out[f"eval/sc_at_{k}"] = M.sc_at_k([[g.meta["letter"] for g in s] for s in per_item], answers, k)
    return out


def pass_eval_metrics(gens: Sequence[Any], num_items: int, *, k: int, noun: str = "problems") -> dict[str, float]:
    """Scored code samples: pass@1 (all tests pass), the mean pass rate (no code block = 0), parse rate."""
    per_item = _samples_by_item(gens, num_items)
    out = {"eval/pass_at_1": M.safe_mean([float(g.meta["correct"]) for g in gens]),
           "eval/pass_rate": M.safe_mean([g.meta["task_reward"] if g.meta["parsed_ok"] else 0.0 for g in gens]),
           "eval/parse_rate": M.safe_mean([float(g.meta["parsed_ok"]) for g in gens]),
           f"eval/num_{noun}": float(num_items), "eval/num_samples": float(k)}
    if k > 1:
        out[f"eval/pass_at_{k}"] = M.safe_mean([float(any(g.meta["correct"] for g in s)) for s in per_item])
    return out


def eval_keys(accuracy_key: str, noun: str, k: int, *, code: bool = False) -> tuple[str, ...]:
    """The keys the evaluation emits (the accuracy first: the default ``evaluation.metric``)."""
    if code:
        return ("eval/pass_at_1", "eval/pass_rate", "eval/parse_rate", f"eval/num_{noun}", "eval/num_samples",
                *((f"eval/pass_at_{k}",) if k > 1 else ()))
    return (accuracy_key, "eval/parse_rate", "eval/random_baseline", f"eval/num_{noun}", "eval/num_samples",
            *((f"eval/sc_at_{k}",) if k > 1 else ()))


def _better(value: float, than: float, mode: str) -> bool:
    return value > than if mode == "max" else value < than


class BestCheckpoint:
    """Which saved checkpoint is best by ``metric`` (``mode`` max | min), as ``<output_dir>/checkpoints/best.json``:

        {"metric": ..., "mode": ..., "best": {"step", "dir", "value", "eval_step"} | null,
         "last": {"step", "dir", "value", "eval_step"}}

    A save is judged by the latest evaluation at or before it (``value`` null: none yet); a tie keeps
    the earlier checkpoint. On resume the file of the interrupted run is read back."""

    def __init__(self, output_dir: str | Path, metric: str, mode: str = "max"):
        if mode not in EVAL_MODES:
            raise ValueError(f"evaluation.mode must be one of {EVAL_MODES}, got {mode!r}")
        self.root = Path(output_dir) / "checkpoints"
        self.metric, self.mode = metric, mode
        self.latest: Optional[tuple[int, float]] = None  # (step, value) of the latest evaluation
        self.best: Optional[dict[str, Any]] = None
        previous = read_best(output_dir)
        if previous and previous.get("metric") == metric and previous.get("mode") == mode:
            self.best = previous.get("best")
            last = previous.get("last") or {}
            if last.get("value") is not None:
                self.latest = (last["eval_step"], last["value"])

    def observe(self, step: int, metrics: dict[str, Any]) -> None:
        """Remember the metric of an evaluation after ``step`` (an error naming it if it is missing)."""
        if self.metric not in metrics:
            raise KeyError(f"evaluation.metric {self.metric!r} is not among the evaluation's metrics "
                           f"{sorted(k for k in metrics if k.startswith('eval/'))}")
        value = metrics[self.metric]
        if value is not None and math.isfinite(value):
            self.latest = (step, float(value))

    def on_save(self, step: int) -> dict[str, Any]:
        """Record the checkpoint just saved at ``step``; return (and write) the new best.json."""
        eval_step, value = self.latest if self.latest is not None else (None, None)
        entry = {"step": step, "dir": f"step_{step:06d}", "value": value, "eval_step": eval_step}
        if value is not None and (self.best is None or self.best.get("value") is None
                                  or _better(value, self.best["value"], self.mode)
                                  or self.best["step"] == step):  # the same step saved again: its newer value
            self.best = entry
        record = {"metric": self.metric, "mode": self.mode, "best": self.best, "last": entry}
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / (BEST_FILE + ".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(self.root / BEST_FILE)
        return record


def read_best(output_dir: str | Path) -> Optional[dict[str, Any]]:
    path = Path(output_dir) / "checkpoints" / BEST_FILE
    return json.loads(path.read_text()) if path.exists() else None


def best_step(output_dir: str | Path) -> Optional[int]:
    """The step of the best checkpoint by the evaluation metric (None: no evaluation recorded yet):
    checkpoint retention must not delete ``step_<best_step>``."""
    record = read_best(output_dir)
    best = (record or {}).get("best")
    return None if best is None else int(best["step"])
