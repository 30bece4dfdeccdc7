"""``aletheia-train --config configs/X.yaml [dotted.key=value ...]``: run one training job.

Starts Ray locally, or attaches unchanged when run under ``ray job submit`` (RAY_ADDRESS set).
Prints a progress line per step and a final summary; exit code 0 on success, 2 on a config error.
``--dry-run`` validates the config (and the algorithm's settings), prints the resolved config and
the actor layout, and starts nothing.
"""
from __future__ import annotations

import argparse
import logging
import sys

from aletheia_ray.config import ConfigError, config_to_dict, load_config
from aletheia_ray.train_config import TrainConfig


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="aletheia-train", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="example: aletheia-train --config configs/debug_cpu.yaml "
                                            "output_dir=/tmp/run trainer.total_steps=20")
    parser.add_argument("--config", required=True, help="YAML training config (see configs/)")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate, print the resolved config and the actor layout, start nothing")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. learner.lr=1e-6")
    return parser.parse_args(argv)


def print_plan(cfg: TrainConfig) -> None:
    """The resolved config (YAML, what the run would write to config.yaml) and the actor layout."""
    import yaml
    from rich.console import Console
    from rich.table import Table

    print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=False), end="")
    layout = cfg.actor_layout()
    table = Table(title=f"actor layout: {cfg.data.kind} task, algorithm {cfg.algorithm.loss}, "
                        f"sync {cfg.algorithm.sync_mode}")
    for column in ("role", "count", "CPUs each", "GPUs each", "note"):
        table.add_column(column)
    for row in layout:
        table.add_row(row["role"], str(row["count"]), f"{row['cpus']:g}", f"{row['gpus']:g}", row["note"])
    counted = [row for row in layout if row["count"] != "auto"]
    table.caption = (f"total (without 'auto' pools): {sum(r['count'] * r['cpus'] for r in counted):g} CPUs, "
                     f"{sum(r['count'] * r['gpus'] for r in counted):g} GPUs; {cfg.trainer.total_steps} steps, "
                     f"{cfg.total_updates} optimizer updates, warm-up {cfg.warmup_steps}")
    Console(width=140).print(table)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        cfg = load_config(args.config, args.overrides, schema=TrainConfig)
    except ConfigError as e:
        print(f"aletheia-train: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        print_plan(cfg)
        return 0
    from aletheia_ray.actors.controller import Trainer, train  # imports Ray/torch: only after the config is valid
    from aletheia_ray.actors.preference_trainer import PreferenceTrainer

    train(cfg, PreferenceTrainer if cfg.algorithm.entry.offline_data else Trainer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
