"""``aletheia-eval report``: tables and figures from score files and training runs, in one folder.

    aletheia-eval report --scores A.json [B.json ...] [--runs RUN_DIR ...] --out DIR
    aletheia-eval cost --run RUN_DIR [--price USD_PER_DEVICE_HOUR]

``report`` writes DIR/report.md, DIR/report.html (standalone: images embedded), DIR/*.png,
DIR/report.json (the tables as data) and DIR/figures.json (the series plotted). Rows are models
(``--label``, one per score file, else the file's model), columns are splits (``--split``, one per
score file, else read from the data file name: heldout / strong / hard / adv). ``cost`` prints the
devices a run reserved, its median step time, device-hours and dollars per step.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from aletheia_ray import cost as C


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="write a report folder (Markdown, HTML, PNG figures)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scores", nargs="+", type=Path, default=[], help="metrics files of 'aletheia-eval score' / 'run'")
    p.add_argument("--runs", nargs="+", type=Path, default=[], help="training run directories (metrics.jsonl, config.yaml)")
    p.add_argument("--out", required=True, type=Path, help="report folder")
    p.add_argument("--label", nargs="+", default=None, help="model name per score file (in --scores order)")
    p.add_argument("--split", nargs="+", default=None, help="split per score file (Heldout, Strong, Hard, Adv, ...)")
    p.add_argument("--cpu-price", type=float, default=None,
                   help=f"$ per CPU-hour for CPU runs (default {C.CPU_USD_PER_HOUR}, an assumption)")
    p.add_argument("--gpu-price", type=float, default=None,
                   help=f"$ per GPU-hour for GPU runs (default {C.H200_USD_PER_HOUR}, the paper's H200 price)")
    p.add_argument("--title", default="Aletheia-Ray evaluation report")
    p.set_defaults(func=run_report)
    c = subparsers.add_parser("cost", help="devices, step time and $ per training step of a run")
    c.add_argument("--run", required=True, type=Path, help="training run directory")
    c.add_argument("--price", type=float, default=None,
                   help=f"$ per device-hour (default: {C.H200_USD_PER_HOUR} per GPU, {C.CPU_USD_PER_HOUR} per CPU)")
    c.set_defaults(func=run_cost_cli)


def run_report(args: argparse.Namespace) -> int:
    from aletheia_ray.report import write_report

    if not args.scores and not args.runs:
        raise ValueError("give --scores and/or --runs")
    md = write_report(args.scores, args.runs, args.out, labels=args.label, splits=args.split,
                      cpu_price=args.cpu_price, gpu_price=args.gpu_price, title=args.title)
    pngs = sorted(p.name for p in args.out.glob("*.png"))
    print(f"wrote {md}, {args.out / 'report.html'} and {len(pngs)} figures: {', '.join(pngs)}")
    return 0


def run_cost_cli(args: argparse.Namespace) -> int:
    from aletheia_ray.report.inputs import load_run
    from aletheia_ray.report.tables import run_cost

    run = load_run(args.run)
    c = run_cost(run, cpu_price=args.price, gpu_price=args.price)
    if "error" in c:
        raise ValueError(f"{args.run}: {c['error']}")
    print(f"{run.label}: {c['count']:g} {c['kind']} reserved")
    if c["step_s"] is None:
        print("no timing_s/step logged in metrics.jsonl: no cost per step")
        return 1
    print(f"median step {c['step_s']:.3f} s over {len(run.rows)} steps; {c['device_hours_per_step']:.6g} "
          f"{c['kind']}-hours per step; ${c['usd_per_step']:.6g} per step ({c['priced_as']})")
    return 0
