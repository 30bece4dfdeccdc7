"""Reference logprobs overlapped with the learner's old logprobs vs one after the other: two
``aletheia-train`` runs of the demo config (``configs/debug_cpu.yaml``) in one invocation, differing
only in ``reference.overlap_old_logprob``.

Per run: mean over steps 2..N of ``timing_s/ref``, ``timing_s/old_logprob``, their sum (the wall
time of the two passes in both modes: overlapped, ``ref`` is only the wait left after
``old_logprob``), the step time and learner tokens/s, then the overlapped/sequential ratios. The
two runs are seeded alike, so their per-step losses must agree (``max |d pg_loss|``): the overlap
changes when the reference pass runs, never what it computes.

    flock /tmp/aletheia-heavy.lock python3 benchmarks/ref_overlap.py [--steps 6] [extra.dotted=overrides ...]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.sync_modes import REPO, run_train

CONFIG = REPO / "configs" / "debug_cpu.yaml"
RUNS = {"sequential": "false", "overlapped": "true"}


def stage_means(rows: list[dict]) -> dict[str, float]:
    steady = rows[1:] or rows  # step 1 includes warm-up
    mean = lambda key: statistics.fmean(r[key] for r in steady)  # noqa: E731
    ref, old = mean("timing_s/ref"), mean("timing_s/old_logprob")
    return {"ref": ref, "old_logprob": old, "ref+old": ref + old, "step": mean("timing_s/step"),
            "tok_s": mean("perf/throughput")}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--cold-start-steps", type=int, default=5)
    p.add_argument("extra", nargs="*", help="more dotted overrides for both runs")
    args = p.parse_args(argv)
    if args.steps < 2:
        raise SystemExit("--steps must be >= 2")
    root = Path(tempfile.mkdtemp(prefix="bench_ref_overlap_"))
    common = [f"trainer.total_steps={args.steps}", "trainer.save_steps=0", "trainer.save_final=false",
              "evaluation.enabled=false", "logging.wandb=disabled", "logging.progress=false",
              f"cold_start.steps={args.cold_start_steps}", *args.extra]
    rows = {name: run_train(name, [f"reference.overlap_old_logprob={flag}", *common], root, CONFIG)
            for name, flag in RUNS.items()}
    loss_gap = max(abs(a["actor/pg_loss"] - b["actor/pg_loss"])
                   for a, b in zip(rows["sequential"], rows["overlapped"], strict=True))
    means = {name: stage_means(r) for name, r in rows.items()}
    table = Table(title=f"reference || old logprobs: {CONFIG.name}, steps 2..{args.steps} (seconds)")
    for col in ("run", "ref", "old_logprob", "ref+old", "step", "learner tok/s"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for name, m in means.items():
        table.add_row(name, f"{m['ref']:.2f}", f"{m['old_logprob']:.2f}", f"{m['ref+old']:.2f}", f"{m['step']:.2f}",
                      f"{m['tok_s']:.0f}")
    seq, ovl = means["sequential"], means["overlapped"]
    table.add_row("overlapped / sequential", "", "", f"{ovl['ref+old'] / seq['ref+old']:.2f}x",
                  f"{ovl['step'] / seq['step']:.2f}x", f"{ovl['tok_s'] / seq['tok_s']:.2f}x")
    Console(width=160).print(table)
    print(f"max |d pg_loss| between the runs over {len(rows['sequential'])} steps: {loss_gap:.3g}; "
          f"metrics.jsonl of each run under {root}")


if __name__ == "__main__":
    main()
