"""Run tracking: a console line per step, ``<output_dir>/metrics.jsonl``, wandb (offline by default).

metrics.jsonl holds one JSON object per step (``step`` first). On resume the rows after the
resumed step (written by the interrupted process after its last checkpoint) are dropped, so the
file always reads as one uninterrupted run.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Optional

from tqdm import tqdm

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"

# (metric key, console label, format) for the one-line step summary, in display order.
CONSOLE_FIELDS = (
    ("reward/mean", "reward", "{:+.3f}"),
    ("reward/list_acc", "acc", "{:.3f}"),
    ("reward/parse_rate", "parse", "{:.2f}"),
    ("actor/kl", "kl", "{:.2e}"),
    ("actor/pg_clipfrac", "clip", "{:.3f}"),
    ("response_length/mean", "len", "{:.1f}"),
    ("frac_reward_zero_std", "zero_std", "{:.2f}"),
    ("perf/throughput", "tok/s", "{:.0f}"),
    ("timing_s/step", "step_s", "{:.1f}"),
)


WANDB_MODES = ("auto", "online", "offline", "disabled")  # logging.wandb


def wandb_mode(setting: str) -> str:
    """``auto`` means online when WANDB_API_KEY is set, offline otherwise."""
    if setting == "auto":
        return "online" if os.environ.get("WANDB_API_KEY") else "offline"
    return setting


def read_metrics(output_dir: str | os.PathLike) -> list[dict[str, Any]]:
    path = Path(output_dir) / METRICS_FILE
    if not path.exists():
        return []
    rows = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{lineno}: not a JSON object ({e})") from None
    return rows


def format_step_line(step: int, total: int, metrics: dict[str, Any]) -> str:
    parts = [f"step {step}/{total}"]
    for key, label, fmt in CONSOLE_FIELDS:
        value = metrics.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            parts.append(f"{label}={fmt.format(value)}")
    return " ".join(parts)


class Tracker:
    """Console + metrics.jsonl + wandb for one run (``start_step`` > 0 when resuming)."""

    def __init__(self, output_dir: str, *, total_steps: int, start_step: int = 0, config: Optional[dict] = None,
                 wandb: str = "auto", project: str = "aletheia_ray", run_name: Optional[str] = None,
                 progress: bool = True):
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.output_dir / METRICS_FILE
        self.total_steps = total_steps
        self.progress = progress
        self.history: list[dict[str, Any]] = []
        self._truncate_after(start_step)
        self._bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", file=sys.stderr,
                         dynamic_ncols=True, disable=not progress)
        self._wandb = self._init_wandb(wandb_mode(wandb), project, run_name, config)
        self._t0 = time.time()

    def _truncate_after(self, start_step: int) -> None:
        kept = [r for r in read_metrics(self.output_dir) if r.get("step", 0) <= start_step]
        dropped = len(read_metrics(self.output_dir)) - len(kept)
        if dropped:
            log.warning("metrics.jsonl: dropping %d rows after resumed step %d", dropped, start_step)
        with open(self.path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
        self.history = kept

    def _init_wandb(self, mode: str, project: str, run_name: Optional[str], config: Optional[dict]):
        if mode == "disabled":
            return None
        import wandb

        run_id_file = self.output_dir / "wandb_run_id"
        run_id = run_id_file.read_text().strip() if run_id_file.exists() else uuid.uuid4().hex[:8]
        run_id_file.write_text(run_id)
        return wandb.init(project=project, name=run_name, id=run_id, resume="allow", mode=mode,
                          dir=str(self.output_dir), config=config or {}, settings=wandb.Settings(
                              console="off", silent=True))

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        row = {"step": step, **{k: _plain(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        self.history.append(row)
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in row.items() if isinstance(v, (int, float))}, step=step)
        if self.progress:
            self._bar.update(1)
            self._bar.write(format_step_line(step, self.total_steps, row), file=sys.stderr)

    def summary(self, last_n: int = 5) -> dict[str, Any]:
        """Means over the last ``last_n`` steps plus totals; printed by ``close``."""
        rows = self.history[-last_n:]
        out: dict[str, Any] = {"steps_logged": len(self.history), "wall_s": round(time.time() - self._t0, 1)}
        for key in ("reward/mean", "reward/list_acc", "reward/parse_rate", "actor/pg_loss", "timing_s/step",
                    "timing_s/gen", "timing_s/reward", "timing_s/ref", "timing_s/old_logprob",
                    "timing_s/update", "timing_s/sync", "perf/throughput"):
            values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
            if values:
                out[f"last{len(rows)}/{key}"] = sum(values) / len(values)
        return out

    def close(self, extra: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        summary = {**self.summary(), **(extra or {})}
        self._bar.close()
        if self.progress:
            width = max(len(k) for k in summary)
            lines = [f"  {k:<{width}}  {v:.4g}" if isinstance(v, float) else f"  {k:<{width}}  {v}"
                     for k, v in summary.items()]
            print("run summary:\n" + "\n".join(lines), file=sys.stderr, flush=True)
        (self.output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if self._wandb is not None:
            self._wandb.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float))})
            self._wandb.finish()
            self._wandb = None
        return summary


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class StageTimer:
    """Seconds per stage of a step, as ``timing_s/<stage>`` (a stage entered twice adds up)."""

    def __init__(self):
        self.times: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        yield
        self.times[f"timing_s/{name}"] = self.times.get(f"timing_s/{name}", 0.0) + time.perf_counter() - start

    def with_other(self, total: str = "step") -> dict[str, float]:
        """The times plus ``timing_s/other``: ``total`` minus every other stage (each runs inside
        ``total`` and none inside another), so the exposed parts add up to ``timing_s/<total>``."""
        whole = self.times[f"timing_s/{total}"]
        parts = sum(v for k, v in self.times.items() if k != f"timing_s/{total}")
        return {**self.times, "timing_s/other": max(0.0, whole - parts)}
