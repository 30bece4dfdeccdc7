"""Checks of a finished training run's outputs, by what each sync mode must show.

``scripts/gpu_smoke.sh`` runs 3 steps of each sync mode on one GPU and calls
``python -m aletheia_ray.run_checks RUN_DIR --steps 3 --sync-mode MODE`` on each; the tests run the
same checks on CPU runs. A check returns the list of problems found (empty: the run is sound), each
naming the step and the metric, so a failed smoke run says what is wrong instead of "bad run".
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from aletheia_ray.tracking import read_metrics

# what every RL step must log (verl/OpenRLHF-style names; aletheia_ray.metrics / tracking)
REQUIRED = ("actor/pg_loss", "actor/grad_norm", "actor/lr", "reward/mean", "reward/parse_rate",
            "response_length/mean", "timing_s/step", "timing_s/gen", "timing_s/update", "timing_s/sync",
            "perf/throughput", "rollout/logprob_abs_diff_mean", "rollout/staleness", "train/updates")
# engine vs trainer log-probabilities of the same sampled tokens (batches that are not stale): a weight-sync or dtype bug shows up
# as a gap of order 1 nat; bf16 engines and trainers typically differ by 0.01-0.05
DEFAULT_MAX_LOGPROB_GAP = 0.25


def check_run(run_dir: str | Path, *, steps: int, sync_mode: str, updates_per_generation: int = 1,
              max_logprob_gap: float = DEFAULT_MAX_LOGPROB_GAP) -> list[str]:
    """Problems of the run in ``run_dir`` that should have made ``steps`` RL steps in ``sync_mode``."""
    if not (Path(run_dir) / "metrics.jsonl").is_file():
        return [f"{Path(run_dir) / 'metrics.jsonl'} does not exist: not a run directory, or the run never logged"]
    rows = [r for r in read_metrics(run_dir) if "step" in r and "actor/pg_loss" in r]
    problems: list[str] = []
    got = [int(r["step"]) for r in rows]
    if got != list(range(1, steps + 1)):
        problems.append(f"steps logged {got}, expected 1..{steps}")
    for r in rows:
        s = int(r["step"])
        missing = [k for k in REQUIRED if k not in r]
        if missing:
            problems.append(f"step {s}: missing {missing}")
        bad = sorted(k for k, v in r.items() if isinstance(v, float) and not math.isfinite(v))
        if bad:
            problems.append(f"step {s}: non-finite {bad}")
        if r.get("timing_s/step", 1.0) <= 0:
            problems.append(f"step {s}: timing_s/step = {r['timing_s/step']}")
        if not r.get("actor/grad_norm", 1.0) > 0:
            problems.append(f"step {s}: actor/grad_norm = {r.get('actor/grad_norm')} (no gradient reached the model)")
        gap = r.get("rollout/logprob_abs_diff_mean", 0.0)
        if r.get("rollout/staleness", 0.0) == 0 and gap > max_logprob_gap:  # stale batches differ by design
            problems.append(f"step {s}: rollout/logprob_abs_diff_mean = {gap:.3f} > {max_logprob_gap}: the engine "
                            "does not sample from the trainer's weights (weight sync, dtype or kernel mismatch)")
        problems += _mode_problems(r, s, sync_mode, updates_per_generation)
    return problems


def _mode_problems(r: dict[str, Any], s: int, sync_mode: str, updates_per_generation: int) -> list[str]:
    staleness, updates = r.get("rollout/staleness"), r.get("train/updates")
    out = []
    if sync_mode == "on_policy":
        want_staleness, want_updates = 0.0, float(s)
    elif sync_mode == "batch_online":
        want_staleness, want_updates = 0.0, float(s * updates_per_generation)
    elif sync_mode == "async_tis":  # step 1 from the initial weights, later ones one update behind
        want_staleness, want_updates = (0.0 if s == 1 else 1.0), float(s)
        if "actor/tis_weight_mean" not in r:
            out.append(f"step {s}: async_tis step without actor/tis_weight_mean")
    else:
        raise ValueError(f"unknown sync mode {sync_mode!r}")
    if staleness is not None and staleness != want_staleness:
        out.append(f"step {s}: rollout/staleness = {staleness}, expected {want_staleness} in {sync_mode}")
    if updates is not None and updates != want_updates:
        out.append(f"step {s}: train/updates = {updates}, expected {want_updates} in {sync_mode}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--sync-mode", required=True, choices=["on_policy", "batch_online", "async_tis"])
    p.add_argument("--updates-per-generation", type=int, default=1)
    p.add_argument("--max-logprob-gap", type=float, default=DEFAULT_MAX_LOGPROB_GAP)
    a = p.parse_args(argv)
    problems = check_run(a.run_dir, steps=a.steps, sync_mode=a.sync_mode,
                         updates_per_generation=a.updates_per_generation, max_logprob_gap=a.max_logprob_gap)
    for line in problems:
        print(f"FAIL {a.run_dir}: {line}", file=sys.stderr)
    if not problems:
        print(f"ok {a.run_dir}: {a.steps} steps of {a.sync_mode}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
