"""``aletheia-eval``: evaluation entry point with one subcommand per module.

Each module in ``SUBCOMMAND_MODULES`` defines ``register(subparsers)``, which adds its parser and
sets ``func`` (called with the parsed args, returns an exit code). To add ``run``, write
``launch/eval_run.py`` with such a ``register`` and append its name here.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

SUBCOMMAND_MODULES = ["aletheia_ray.launch.eval_score", "aletheia_ray.launch.eval_run"]
SUBCOMMAND_MODULES.append("aletheia_ray.launch.eval_bias")  # aletheia-eval bias (per-modification Adv vs Heldout)
SUBCOMMAND_MODULES.append("aletheia_ray.launch.eval_report")  # aletheia-eval report / cost (tables, figures, $ per step)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aletheia-eval", description="Evaluate code verifiers.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError) as exc:  # bad input files: one clear line, exit 2
        parser.exit(2, f"aletheia-eval {args.command}: error: {exc}\n")


if __name__ == "__main__":
    sys.exit(main())
