"""The one placement group of a colocated run (``colocate.enabled``) and the keyword arguments that
put each role where the plan says (``aletheia_ray/placement.py``: rank r in bundle r, engine e's TP
workers in bundles e*tp .. e*tp+tp-1, the reference in ``reference_bundle``).

The group is created (and waited for) here and removed by ``shutdown`` after every actor in it is
gone; the pools adopt it (``RolloutPool(placement_group=, engine_slots=)``,
``LearnerGroup(placement_group=)``, ``ActorGroup("reference", placement_group=)``) and never remove it.
"""
from __future__ import annotations

import logging
from typing import Any, Optional

import ray

from aletheia_ray.actors.group import ActorGroup
from aletheia_ray.actors.rollout_recovery import engine_died
from aletheia_ray.placement import ColocatedPlan

log = logging.getLogger("aletheia_ray.actors.colocation")


class Colocation:
    def __init__(self, plan: ColocatedPlan, ready_timeout_s: float = 600):
        self.plan = plan
        self.group = ActorGroup("colocated", plan.bundles, plan.strategy, ready_timeout_s=ready_timeout_s)
        self.placement_group = self.group.placement_group

    def rollout_kwargs(self, *, sleep_mode: bool, gpu_memory_utilization: float) -> dict[str, Any]:
        """``RolloutPool`` arguments: the shared group, one slot per engine, the engine's total GPU share."""
        first, tp = self.plan.engines[0], self.plan.tensor_parallel_size
        gpus = first.num_gpus if tp == 1 else float(first.env["VLLM_RAY_PER_WORKER_GPUS"]) * tp
        return dict(placement_group=self.placement_group, engine_slots=list(self.plan.engines),
                    num_cpus_per_engine=first.num_cpus, num_gpus_per_engine=gpus, sleep_mode=sleep_mode,
                    gpu_memory_utilization=gpu_memory_utilization)

    def learner_kwargs(self) -> dict[str, Any]:
        """``LearnerGroup`` arguments: rank r in bundle r of the shared group, each with its share."""
        rank = self.plan.learner[0]
        return dict(placement_group=self.placement_group, num_cpus_per_rank=rank.num_cpus,
                    num_gpus_per_rank=rank.num_gpus)

    def reference_group(self) -> ActorGroup:
        return ActorGroup("reference", placement_group=self.placement_group)

    def reference_launch(self) -> dict[str, Any]:
        """``ActorGroup.launch`` arguments of the reference actor (its bundle and share)."""
        ref = self.plan.reference
        if ref is None:
            raise ValueError("the colocation plan has no reference slot (reference not used by this run)")
        return dict(bundle_index=ref.bundle_index, options={"num_cpus": ref.num_cpus, "num_gpus": ref.num_gpus})

    def shutdown(self) -> None:
        self.group.shutdown()


def role_layouts(cfg, colocation: Optional[Colocation]) -> tuple[dict, dict, dict]:
    """Where each GPU role runs, as keyword arguments: (``RolloutPool``, ``LearnerGroup``, the
    reference's ``ActorGroup.launch``), from the config's per-role keys or from the colocated plan."""
    r, l, ref = cfg.rollout, cfg.learner, cfg.reference
    if colocation is None:
        return (dict(num_cpus_per_engine=r.num_cpus_per_engine, num_gpus_per_engine=r.num_gpus_per_engine,
                     gpu_memory_utilization=r.gpu_memory_utilization),
                dict(num_cpus_per_rank=l.num_cpus_per_rank, num_gpus_per_rank=l.num_gpus_per_rank),
                dict(options={"num_cpus": ref.num_cpus, "num_gpus": ref.num_gpus}))
    c = cfg.colocate
    reference = colocation.reference_launch() if colocation.plan.reference is not None else {}
    return (colocation.rollout_kwargs(sleep_mode=c.sleep_rollout, gpu_memory_utilization=c.gpu_memory_utilization),
            colocation.learner_kwargs(), reference)


def call_engines(engines: list, method: str, *args) -> None:
    """``engine.<method>(*args)`` on every engine at once (sleep / wake_up). A dead engine is only
    logged: the weight sync that follows replaces it (``rollout_recovery``), and a new engine starts awake."""
    refs = [getattr(engine, method).remote(*args) for engine in engines]
    for i, ref in enumerate(refs):
        try:
            ray.get(ref)
        except Exception as exc:
            if not engine_died(exc):
                raise
            log.warning("rollout engine %d died before %s: the next weight sync replaces it", i, method)
