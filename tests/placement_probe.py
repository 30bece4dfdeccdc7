"""Ray driver (run as a script against a running cluster, RAY_ADDRESS set): place probe actors into
exactly the placement groups and bundles our code creates for a GPU layout, with the Ray options the
real actors get, and write where each one landed as JSON.

    python3 tests/placement_probe.py OUT.json rollout.num_engines=2 learner.placement_strategy=SPREAD ...

The layout is a ``TrainConfig`` (configs/debug_cpu_synthetic.yaml + the overrides). The models cannot
load on this CPU, so each role is a ``Probe`` that reports its node, placement group, ``ray.get_gpu_ids()``
and CUDA_VISIBLE_DEVICES. Placement comes from the real code: ``engine_placement`` + ``ActorGroup``
(one group per engine, the engine in bundle 0 capturing its children, its env), ``learner_bundles`` +
``ActorGroup`` with ``learner.placement_strategy`` (rank r in bundle r), an ``ActorGroup`` without a
placement group for the reference. An engine probe starts its TP-worker probes itself, as vLLM's
RayExecutorV2 does from inside the engine (vllm/v1/executor/ray_executor_v2.py, ``_init_executor``
and ``_get_actor_resource_kwargs``; ray_utils.py ``initialize_ray_cluster``,
``get_bundles_sorted_by_node``): the current placement group's bundles holding a GPU, one worker per
bundle with ``num_cpus=0, num_gpus=VLLM_RAY_PER_WORKER_GPUS`` and RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES.

Groups are created one after another (learner, engines, reference) and each waited for, so the
result does not depend on a race (``Trainer.start`` creates the learner and rollout groups concurrently).
"""
from __future__ import annotations

import json
import os
import sys
import time

import ray
from ray.util.placement_group import get_current_placement_group, placement_group_table
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from aletheia_ray.actors.group import ActorGroup
from aletheia_ray.actors.learner import learner_bundles
from aletheia_ray.actors.rollout import engine_env, engine_placement
from aletheia_ray.config import load_config
from aletheia_ray.train_config import TrainConfig

BASE_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "debug_cpu_synthetic.yaml")


class Probe:
    """Stands in for one actor: reports where Ray put it; an engine probe also starts its TP workers."""

    def __init__(self, role: str):
        self.role, self.workers = role, []

    def report(self) -> dict:
        ctx = ray.get_runtime_context()
        return {"role": self.role, "node_id": ctx.get_node_id(), "placement_group_id": ctx.get_placement_group_id(),
                "gpu_ids": [str(g) for g in ray.get_gpu_ids()], "pid": os.getpid(),
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}

    def start_tp_workers(self) -> list[dict]:
        """What vLLM's Ray executor does in the engine (module docstring): one worker per GPU bundle."""
        pg = get_current_placement_group()
        if pg is None:
            raise RuntimeError(f"{self.role}: no current placement group (capture_child_tasks not set?)")
        per_worker = float(os.environ["VLLM_RAY_PER_WORKER_GPUS"])
        gpu_bundles = [i for i, b in enumerate(pg.bundle_specs) if b.get("GPU", 0)]
        env = {"RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "1"}
        for k, b in enumerate(gpu_bundles):
            strategy = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=b)
            self.workers.append(ray.remote(Probe).options(
                num_cpus=0, num_gpus=per_worker, scheduling_strategy=strategy,
                runtime_env={"env_vars": env}).remote(f"{self.role}/tp{k}"))
        reports = ray.get([w.report.remote() for w in self.workers])
        return [dict(r, bundle_index=b) for r, b in zip(reports, gpu_bundles)]


def bundle_nodes(pg) -> dict[int, str]:
    return {int(k): v for k, v in placement_group_table(pg)["bundles_to_node_id"].items()}


def place(cfg: TrainConfig) -> dict:
    r, l, ref = cfg.rollout, cfg.learner, cfg.reference
    probe = ray.remote(Probe)
    out: dict = {"strategy": l.placement_strategy, "nodes": sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])}
    groups = []
    try:
        # learner: LearnerGroup's placement group and rank options (actors/learner.py)
        learner = ActorGroup("learner", learner_bundles(l.num_ranks, l.num_cpus_per_rank, l.num_gpus_per_rank),
                             l.placement_strategy, ready_timeout_s=120)
        groups.append(learner)
        options = dict(num_cpus=l.num_cpus_per_rank, num_gpus=l.num_gpus_per_rank, name=None)
        ranks = [learner.launch(probe, f"learner/rank{i}", bundle_index=i, options=options) for i in range(l.num_ranks)]
        out["learner"] = {"placement_group_id": learner.placement_group.id.hex(),
                          "bundle_nodes": bundle_nodes(learner.placement_group),
                          "ranks": ray.get([a.report.remote() for a in ranks], timeout=120)}
        # rollout: RolloutPool's placement groups, engine options and env (actors/rollout.py)
        plan = engine_placement(r.num_cpus_per_engine, r.num_gpus_per_engine, r.tensor_parallel_size)
        env = {**engine_env(r.kv_cache_gb, r.num_gpus_per_engine, None), **plan.env}
        rollout = ActorGroup("rollout", plan.bundles, plan.strategy, count=r.num_engines, ready_timeout_s=120)
        groups.append(rollout)
        options = dict(num_cpus=plan.actor_num_cpus, num_gpus=plan.actor_num_gpus, runtime_env={"env_vars": env})
        engines = [rollout.launch(probe, f"engine{i}", bundle_index=0, placement_group_index=i,
                                  capture_child_tasks=True, options=options) for i in range(r.num_engines)]
        reports = ray.get([e.report.remote() for e in engines], timeout=120)
        workers = ray.get([e.start_tp_workers.remote() for e in engines], timeout=120) if r.tensor_parallel_size > 1 \
            else [[] for _ in engines]
        out["engines"] = [{"placement_group_id": pg.id.hex(), "strategy": plan.strategy, "bundles": plan.bundles,
                           "bundle_nodes": bundle_nodes(pg), "engine": rep, "tp_workers": w}
                          for pg, rep, w in zip(rollout.placement_groups, reports, workers)]
        # reference: the controller's ActorGroup("reference") and options (actors/controller.py)
        if cfg.use_reference:
            reference = ActorGroup("reference")
            groups.append(reference)
            handle = reference.launch(probe, "reference", options={"num_cpus": ref.num_cpus, "num_gpus": ref.num_gpus})
            out["reference"] = ray.get(handle.report.remote(), timeout=120)
    finally:
        for g in reversed(groups):
            g.shutdown()
    return out


def main(argv: list[str]) -> None:
    out_path, overrides = argv[0], argv[1:]
    cfg = load_config(BASE_CONFIG, overrides, TrainConfig)
    ray.init(log_to_driver=False)
    try:
        deadline = time.monotonic() + 60  # a worker node registers shortly after its `ray start`
        while len([n for n in ray.nodes() if n["Alive"]]) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        result = place(cfg)
    finally:
        ray.shutdown()
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
