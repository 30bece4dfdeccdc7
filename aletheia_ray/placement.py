"""Colocation layout (no Ray here): learner ranks, rollout engines and the reference sharing one
placement group of one bundle per GPU, as verl's hybrid engine and OpenRLHF's
``--colocate_all_models`` do. ``actors/colocation.py`` creates the group from this plan.

Bundle b is GPU b (``{"GPU": num_gpus_per_bundle, "CPU": num_cpus_per_bundle}``; CPU-only bundles
with ``num_gpus_per_bundle=0``). Who sits where:

* learner rank r: bundle r;
* rollout engine e: its TP workers in bundles e*tp .. e*tp+tp-1. With tp == 1 the engine actor
  itself holds the GPU share (vLLM runs in it); with tp > 1 the engine actor sits in bundle e*tp
  with CPUs only and vLLM's Ray executor starts one worker per bundle, each asking
  ``VLLM_RAY_PER_WORKER_GPUS`` GPUs in the bundles of ``VLLM_RAY_BUNDLE_INDICES`` (both in the
  engine's environment; the workers ask no CPU);
* the reference: bundle ``reference_bundle`` (default: the last one).

Shares: every role asks the same fraction of a bundle, ``1/k`` of its GPUs and CPUs with k the
most roles one bundle holds (3 with a reference, else 2), rounded down to Ray's 1e-4 resource
granularity so that k shares never add up past the bundle. The fractions are Ray's bookkeeping
(who may be scheduled together); GPU memory is shared in time: the engines sleep while the
learner trains (vLLM sleep mode) and ``colocate.gpu_memory_utilization`` bounds vLLM's budget.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Optional

from pydantic import Field

from aletheia_ray.config import StrictModel

RAY_RESOURCE_STEP = 1e-4  # Ray keeps resource quantities as fixed point with 4 decimals
STRATEGIES = ("PACK", "STRICT_PACK", "SPREAD", "STRICT_SPREAD")


def share(amount: float, parts: int) -> float:
    """``amount / parts`` rounded down to Ray's resource step (``parts`` shares never exceed ``amount``)."""
    return round(math.floor(amount / parts / RAY_RESOURCE_STEP + 1e-9) * RAY_RESOURCE_STEP, 4)


@dataclass(frozen=True)
class Slot:
    """One resource ask in one bundle: ``role`` (learner | rollout | rollout_worker | reference)
    number ``index`` (rank, engine, or ``engine * tp + worker``)."""
    role: str
    index: int
    bundle_index: int
    num_cpus: float
    num_gpus: float


@dataclass(frozen=True)
class EngineSlot:
    """Rollout engine ``index``: its actor's bundle and asks, its TP workers' bundles, its env."""
    index: int
    bundle_indices: tuple[int, ...]
    num_cpus: float
    num_gpus: float
    env: dict = field(default_factory=dict)

    @property
    def bundle_index(self) -> int:
        return self.bundle_indices[0]


@dataclass(frozen=True)
class ColocatedPlan:
    bundles: list[dict]
    strategy: str
    learner: list[Slot]
    engines: list[EngineSlot]
    reference: Optional[Slot]
    tensor_parallel_size: int

    @property
    def num_gpus(self) -> float:
        """GPUs the layout reserves: bundles x GPUs per bundle (= learner.num_ranks x colocate.num_gpus_per_bundle)."""
        return sum(b.get("GPU", 0.0) for b in self.bundles)

    def slots(self) -> list[Slot]:
        """Every resource ask: learner ranks, engine actors, vLLM TP workers (tp > 1), the reference."""
        out = list(self.learner)
        tp = self.tensor_parallel_size
        for e in self.engines:
            out.append(Slot("rollout", e.index, e.bundle_index, e.num_cpus, e.num_gpus))
            if tp > 1:
                per_worker = float(e.env["VLLM_RAY_PER_WORKER_GPUS"])
                out += [Slot("rollout_worker", e.index * tp + w, b, 0.0, per_worker)
                        for w, b in enumerate(e.bundle_indices)]
        if self.reference is not None:
            out.append(self.reference)
        return out

    def usage(self) -> list[dict[str, float]]:
        """Per bundle, the sum of what its slots ask, per resource."""
        used = [{"CPU": 0.0, "GPU": 0.0} for _ in self.bundles]
        for s in self.slots():
            used[s.bundle_index]["CPU"] += s.num_cpus
            used[s.bundle_index]["GPU"] += s.num_gpus
        return used

    def roles_by_bundle(self) -> list[list[str]]:
        """Per bundle, ``role:index`` of every slot in it (e.g. ``["learner:0", "rollout:0", "reference:0"]``)."""
        roles: list[list[str]] = [[] for _ in self.bundles]
        for s in self.slots():
            roles[s.bundle_index].append(f"{s.role}:{s.index}")
        return roles


def colocated_plan(num_bundles: int, *, num_cpus_per_bundle: float, num_gpus_per_bundle: float, num_engines: int,
                   tensor_parallel_size: int = 1, reference: bool = True, reference_bundle: Optional[int] = None,
                   strategy: str = "PACK") -> ColocatedPlan:
    """The layout of ``num_bundles`` (= learner ranks) bundles; errors name the config keys."""
    tp = tensor_parallel_size
    if num_bundles < 1 or num_engines < 1 or tp < 1:
        raise ValueError(f"need learner.num_ranks, rollout.num_engines, rollout.tensor_parallel_size >= 1, got "
                         f"{num_bundles}, {num_engines}, {tp}")
    if not 0 <= num_gpus_per_bundle <= 1:
        raise ValueError(f"colocate.num_gpus_per_bundle must be in [0, 1] (one bundle per GPU; 0: CPU bundles), "
                         f"got {num_gpus_per_bundle}")
    if num_cpus_per_bundle <= 0:
        raise ValueError(f"colocate.num_cpus_per_bundle must be > 0, got {num_cpus_per_bundle}")
    if strategy not in STRATEGIES:
        raise ValueError(f"colocate.strategy must be one of {STRATEGIES}, got {strategy!r}")
    gpu = num_gpus_per_bundle > 0
    if gpu and num_engines * tp != num_bundles:
        raise ValueError(f"colocate: rollout.num_engines x rollout.tensor_parallel_size ({num_engines} x {tp}) must "
                         f"equal learner.num_ranks ({num_bundles}): one engine TP worker per GPU bundle")
    if not gpu and tp > 1:
        raise ValueError("colocate: rollout.tensor_parallel_size > 1 needs GPU bundles (colocate.num_gpus_per_bundle > 0)")
    if not gpu and num_engines > num_bundles:
        raise ValueError(f"colocate: rollout.num_engines ({num_engines}) must be <= learner.num_ranks ({num_bundles}) "
                         "(one engine per bundle at most)")
    ref_bundle = num_bundles - 1 if reference_bundle is None else reference_bundle
    if reference and not 0 <= ref_bundle < num_bundles:
        raise ValueError(f"colocate.reference_bundle ({ref_bundle}) must be < learner.num_ranks ({num_bundles})")
    k = 3 if reference else 2
    cpu_each, gpu_each = share(num_cpus_per_bundle, k), share(num_gpus_per_bundle, k)
    bundle = {"CPU": float(num_cpus_per_bundle), **({"GPU": float(num_gpus_per_bundle)} if gpu else {})}
    learner = [Slot("learner", r, r, cpu_each, gpu_each) for r in range(num_bundles)]
    engines = []
    for e in range(num_engines):
        bundles = tuple(range(e * tp, (e + 1) * tp))
        if tp == 1:
            engines.append(EngineSlot(e, bundles, cpu_each, gpu_each))
        else:  # vLLM's Ray executor: one worker per listed bundle, VLLM_RAY_PER_WORKER_GPUS each
            env = {"VLLM_RAY_BUNDLE_INDICES": ",".join(map(str, bundles)), "VLLM_RAY_PER_WORKER_GPUS": str(gpu_each)}
            engines.append(EngineSlot(e, bundles, cpu_each, 0.0, env))
    ref = Slot("reference", 0, ref_bundle, cpu_each, gpu_each) if reference else None
    return ColocatedPlan([dict(bundle) for _ in range(num_bundles)], strategy, learner, engines, ref, tp)


# ---- the config section (``colocate:`` of TrainConfig) and its cross-field checks -------------------------

class ColocateConfig(StrictModel):
    """``colocate:``: learner ranks, rollout engines and the reference in ONE placement group of
    ``learner.num_ranks`` bundles (one per GPU; module docstring). With it the per-role CPU/GPU keys
    (``rollout.num_cpus_per_engine``/``num_gpus_per_engine``, ``learner.num_cpus_per_rank``/
    ``num_gpus_per_rank``, ``reference.num_cpus``/``num_gpus``) are not used: the plan's shares
    are (``aletheia-train --dry-run`` prints them). The run reserves
    ``learner.num_ranks x num_gpus_per_bundle`` GPUs."""

    enabled: bool = False
    num_gpus_per_bundle: float = Field(1.0, ge=0, le=1)  # 0: CPU bundles (the CPU test layout)
    num_cpus_per_bundle: float = Field(1.0, gt=0)
    # vLLM sleep mode around training: engines sleep after generating (weights offloaded to host,
    # KV cache dropped), wake their weights for the sync, then their KV cache (verl's order)
    sleep_rollout: bool = True
    sleep_level: Literal[1, 2] = 1  # 2: weights discarded too (every sync reloads them all)
    gpu_memory_utilization: float = Field(0.35, gt=0, le=1)  # vLLM's share of each GPU (learner + reference use the rest)
    reference_bundle: Optional[int] = Field(None, ge=0)  # None: the last bundle
    strategy: Literal[STRATEGIES] = "PACK"  # STRICT_PACK: all bundles on one node or fail


def check_colocation(cfg) -> ColocatedPlan:
    """Cross-field checks of a ``TrainConfig`` with ``colocate.enabled`` (errors name the keys); the plan."""
    a = cfg.algorithm
    if cfg.sync_policy.max_staleness:
        raise ValueError(f"colocate.enabled with algorithm.sync_mode={a.sync_mode}: the next batch would be generated "
                         "while the learner trains on the same GPUs, and the engines sleep during training; "
                         "colocation runs on_policy or batch_online (or set colocate.enabled=false)")
    return colocation_plan(cfg)


def colocation_plan(cfg) -> ColocatedPlan:
    c, r = cfg.colocate, cfg.rollout
    return colocated_plan(cfg.learner.num_ranks, num_cpus_per_bundle=c.num_cpus_per_bundle,
                          num_gpus_per_bundle=c.num_gpus_per_bundle, num_engines=r.num_engines,
                          tensor_parallel_size=r.tensor_parallel_size, reference=cfg.use_reference,
                          reference_bundle=c.reference_bundle, strategy=c.strategy)


def colocated_rows(rows: list[dict], plan: ColocatedPlan) -> list[dict]:
    """``TrainConfig.actor_layout`` rows when colocated: the GPU roles reserve nothing of their own (0
    CPUs/GPUs; their share of a bundle and their bundles in the note), one row for the placement
    group reserves the bundles, so the layout's totals are the run's."""
    tp = plan.tensor_parallel_size
    first = plan.engines[0]
    engine_gpus = first.num_gpus if tp == 1 else float(first.env["VLLM_RAY_PER_WORKER_GPUS"])
    where = {"rollout engine (vLLM)": (first.num_cpus, engine_gpus, f"bundles {[list(e.bundle_indices) for e in plan.engines]}"
                                       + (" (the GPU share: each TP worker's)" if tp > 1 else "")),
             "learner rank (DeepSpeed)": (plan.learner[0].num_cpus, plan.learner[0].num_gpus, "rank r in bundle r")}
    if plan.reference is not None:
        where["reference"] = (plan.reference.num_cpus, plan.reference.num_gpus, f"bundle {plan.reference.bundle_index}")
    out = []
    for row in rows:
        if row["role"] in where:
            cpus, gpus, note = where[row["role"]]
            row = {**row, "cpus": 0.0, "gpus": 0.0,
                   "note": f"{row['note']}; colocated, {cpus:g} CPU + {gpus:g} GPU each: {note}"}
        out.append(row)
    out.append({"role": "colocated placement group", "count": len(plan.bundles), "cpus": plan.bundles[0]["CPU"],
                "gpus": plan.bundles[0].get("GPU", 0.0), "note": f"bundles ({plan.strategy}), {plan.num_gpus:g} GPUs"})
    return out
