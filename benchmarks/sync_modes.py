"""Training throughput of the three sync modes side by side (on_policy, async_tis, batch_online):
one ``aletheia-train`` run per mode on the same CPU config, model, data and batch sizes.

Per mode: mean step time over steps 2..N (step 1 includes warm-up), learner tokens/s
(``perf/throughput``), generation time of the trained batch (``timing_s/gen``) and the time the
controller was blocked on generation (``timing_s/gen_wait``: below ``gen`` when generation
overlapped the update, as in async_tis), optimizer updates per second, and the step-time ratio
against on_policy. batch_online makes ``--bo-updates`` updates per generated batch.

    flock /tmp/aletheia-heavy.lock python3 benchmarks/sync_modes.py [--steps 6] [--modes on_policy,async_tis]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "debug_cpu_synthetic.yaml"
MODES = ("on_policy", "async_tis", "batch_online")


def run_train(name: str, overrides: list[str], root: Path, config: Path = CONFIG) -> list[dict]:
    """One ``aletheia-train`` run (own Ray temp dir, output under ``root/name``); its metrics rows."""
    from aletheia_ray.tracking import read_metrics

    out = root / name
    overrides = [f"output_dir={out}", *overrides, f"ray.temp_dir={tempfile.mkdtemp(prefix='bray', dir='/tmp')}"]
    print(f"[{name}] aletheia-train --config {config.name} {' '.join(overrides)}", file=sys.stderr, flush=True)
    proc = subprocess.run([sys.executable, "-m", "aletheia_ray.launch.train", "--config", str(config), *overrides],
                          cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name}: aletheia-train failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return read_metrics(out)


def run_mode(mode: str, args: argparse.Namespace, root: Path) -> list[dict]:
    overrides = [f"algorithm.sync_mode={mode}", f"trainer.total_steps={args.steps}",
                 "trainer.save_steps=0", "trainer.save_final=false", "evaluation.enabled=false",
                 "logging.wandb=disabled", "logging.progress=false", f"cold_start.steps={args.cold_start_steps}",
                 f"algorithm.prompts_per_step={args.prompts}", f"algorithm.samples_per_prompt={args.samples}",
                 f"rollout.max_new_tokens={args.max_new_tokens}"]
    if mode == "batch_online":
        overrides += [f"algorithm.updates_per_generation={args.bo_updates}"]
    return run_train(mode, overrides + args.extra, root)


def summarize(rows: list[dict]) -> dict[str, float]:
    steady = rows[1:] or rows
    mean = lambda key: statistics.fmean(r[key] for r in steady)  # noqa: E731
    step_s = mean("timing_s/step")
    return {"step_s": step_s, "tok_s": mean("perf/throughput"), "gen_s": mean("timing_s/gen"),
            "gen_wait_s": mean("timing_s/gen_wait"), "update_s": mean("timing_s/update"),
            "updates_per_s": statistics.fmean(r.get("actor/num_updates", 1.0) for r in steady) / step_s,
            "staleness": mean("rollout/staleness"), "reward": mean("reward/mean")}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--cold-start-steps", type=int, default=5)
    p.add_argument("--bo-updates", type=int, default=2)
    p.add_argument("extra", nargs="*", help="more dotted overrides for every run")
    args = p.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown or args.steps < 2:
        raise SystemExit(f"--modes: unknown {sorted(unknown)} (known: {MODES})" if unknown else "--steps must be >= 2")
    root = Path(tempfile.mkdtemp(prefix="bench_sync_modes_"))
    results = {m: summarize(run_mode(m, args, root)) for m in modes}
    base = results.get("on_policy")
    table = Table(title=f"sync modes: {args.prompts} prompts x {args.samples} samples, {args.max_new_tokens} new tokens, "
                        f"steps 2..{args.steps} (debug_cpu_synthetic.yaml)")
    for col in ("mode", "step s", "learner tok/s", "gen s", "gen wait s", "update s", "updates/s", "staleness",
                "step time vs on_policy"):
        table.add_column(col, justify="left" if col == "mode" else "right")
    for mode, r in results.items():
        ratio = f"{r['step_s'] / base['step_s']:.2f}x" if base else "-"
        table.add_row(mode, f"{r['step_s']:.2f}", f"{r['tok_s']:.0f}", f"{r['gen_s']:.2f}", f"{r['gen_wait_s']:.2f}",
                      f"{r['update_s']:.2f}", f"{r['updates_per_s']:.2f}", f"{r['staleness']:.2f}", ratio)
    Console(width=160).print(table)
    print(f"metrics.jsonl of each run under {root}")


if __name__ == "__main__":
    main()
