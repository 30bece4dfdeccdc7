"""``aletheia-train --config configs/X.yaml [dotted.key=value ...]``: run one training job.

Starts Ray locally, or attaches unchanged when run under ``ray job submit`` (RAY_ADDRESS set).
Prints a progress line per step and a final summary; exit code 0 on success, 2 on a config error.
"""
from __future__ import annotations

import argparse
import logging
import sys

from aletheia_ray.config import ConfigError, load_config
from aletheia_ray.train_config import TrainConfig


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="aletheia-train", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="example: aletheia-train --config configs/debug_cpu.yaml "
                                            "output_dir=/tmp/run trainer.total_steps=20")
    parser.add_argument("--config", required=True, help="YAML training config (see configs/)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. learner.lr=1e-6")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        cfg = load_config(args.config, args.overrides, schema=TrainConfig)
    except ConfigError as e:
        print(f"aletheia-train: {e}", file=sys.stderr)
        return 2
    from aletheia_ray.actors.controller import train  # imports Ray/torch: only after the config is valid

    train(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
