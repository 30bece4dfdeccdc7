"""Colocation: learner ranks, rollout engines and the reference in ONE placement group, one bundle
per GPU (aletheia_ray/placement.py, actors/colocation.py), engines asleep while the learner trains.

(a) the 8-GPU paper layout's plan, pure; (b) that plan's real placement group on a local Ray with 8
fake GPUs (Ray counts GPUs it does not have; no CUDA runs), probe actors placed with the roles'
options, TP workers started from inside the engine probe as vLLM's Ray executor does; (c) a real
short colocated CPU training run (CPU bundles; vLLM, DeepSpeed, the reference in the shared group)
and the engine's sleep / wake / load / generate order from its own activity log.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import time

import pytest
import ray
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from aletheia_ray.config import ConfigError, config_to_dict, load_config
from aletheia_ray.cost import devices_of
from aletheia_ray.placement import colocated_plan
from aletheia_ray.train_config import TrainConfig
from e2e_helpers import SYNTHETIC_CONFIG
from fixture_paths import REPO_ROOT

EIGHT_GPU = REPO_ROOT / "configs" / "paper" / "grpo_think_16k_8gpu_colocated.yaml"
MODEL = "model.path=/models/policy"
VLLM_ENV = ("VLLM_RAY_BUNDLE_INDICES", "VLLM_RAY_PER_WORKER_GPUS")


def eight_gpu(*overrides: str) -> TrainConfig:
    return load_config(EIGHT_GPU, [MODEL, *overrides], schema=TrainConfig)


# ---------------------------------------------------------------- (a) the plan, pure

def test_the_8_gpu_layout_puts_every_role_in_its_bundle_and_no_bundle_is_oversubscribed():
    cfg = eight_gpu()
    plan = cfg.colocated_plan()
    assert plan.bundles == [{"CPU": 8.0, "GPU": 1.0}] * 8 and plan.strategy == "STRICT_PACK"
    assert plan.num_gpus == cfg.learner.num_ranks * cfg.colocate.num_gpus_per_bundle == 8
    assert devices_of(config_to_dict(cfg)) == ("GPU", 8.0)  # the cost model prices the same 8 GPUs
    roles = plan.roles_by_bundle()
    for b in range(8):
        expected = {f"learner:{b}", f"rollout_worker:{b}"}
        if b % 2 == 0:
            expected.add(f"rollout:{b // 2}")  # engine actor (CPUs only) beside its first TP worker
        if b == 7:
            expected.add("reference:0")
        assert set(roles[b]) == expected, (b, roles[b])
    assert [e.env for e in plan.engines] == [{"VLLM_RAY_BUNDLE_INDICES": f"{2 * e},{2 * e + 1}",
                                              "VLLM_RAY_PER_WORKER_GPUS": "0.3333"} for e in range(4)]
    assert all(e.num_gpus == 0 and e.num_cpus > 0 for e in plan.engines)
    for b, used in enumerate(plan.usage()):
        for resource in ("CPU", "GPU"):
            assert used[resource] <= plan.bundles[b][resource] + 1e-12, (b, resource, used)
    assert max(u["GPU"] for u in plan.usage()) == pytest.approx(3 * 0.3333)
    layout = cfg.actor_layout()  # --dry-run totals: the bundles, not the shares on top of them
    assert sum(r["count"] * r["gpus"] for r in layout) == 8


def test_tp1_engines_hold_their_gpu_share_and_cpu_bundles_take_fewer_engines():
    plan = eight_gpu("rollout.num_engines=8", "rollout.tensor_parallel_size=1").colocated_plan()
    assert [(e.bundle_indices, e.num_gpus, e.env) for e in plan.engines] == [((e,), 0.3333, {}) for e in range(8)]
    cpu = colocated_plan(2, num_cpus_per_bundle=0.9, num_gpus_per_bundle=0, num_engines=1)
    assert cpu.bundles == [{"CPU": 0.9}] * 2
    assert cpu.roles_by_bundle() == [["learner:0", "rollout:0"], ["learner:1", "reference:0"]]
    assert all(u["CPU"] <= 0.9 and u["GPU"] == 0 for u in cpu.usage())
    no_ref = colocated_plan(4, num_cpus_per_bundle=1, num_gpus_per_bundle=1, num_engines=4, reference=False)
    assert no_ref.reference is None and no_ref.learner[0].num_gpus == 0.5


@pytest.mark.parametrize("overrides, message", [
    (["rollout.num_engines=3"], r"rollout.num_engines x rollout.tensor_parallel_size \(3 x 2\) must equal "
                                r"learner.num_ranks \(8\)"),
    (["algorithm.sync_mode=async_tis"], r"colocate.enabled with algorithm.sync_mode=async_tis"),
    (["colocate.num_gpus_per_bundle=0"], r"tensor_parallel_size > 1 needs GPU bundles"),
    (["colocate.reference_bundle=8"], r"colocate.reference_bundle \(8\) must be < learner.num_ranks \(8\)"),
    (["colocate.num_gpus_per_bundle=2"], r"colocate.num_gpus_per_bundle"),
    (["colocate.sleep_level=3"], r"colocate.sleep_level"),
    (["colocate.bundles=8"], r"colocate.bundles"),
])
def test_inconsistent_colocation_is_refused_naming_the_keys(overrides, message):
    with pytest.raises(ConfigError, match=message):
        eight_gpu(*overrides)


# ---------------------------------------------------------------- (b) the real placement group, fake GPUs

@ray.remote
class Probe:
    """Stands in for a role's actor: reports where Ray put it."""

    def where(self) -> dict:
        ctx = ray.get_runtime_context()
        return {"actor_id": ctx.get_actor_id(), "placement_group_id": ctx.get_placement_group_id(),
                "node_id": ctx.get_node_id(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
                "env": {k: os.environ.get(k) for k in VLLM_ENV}}

    def start_tp_workers(self) -> list[dict]:
        """As vLLM's Ray executor does (v1/executor/ray_executor.py ``_init_workers_ray``): in the
        current placement group, one worker per bundle of VLLM_RAY_BUNDLE_INDICES, num_cpus=0,
        num_gpus=VLLM_RAY_PER_WORKER_GPUS."""
        pg = ray.util.get_current_placement_group()
        gpus = float(os.environ["VLLM_RAY_PER_WORKER_GPUS"])
        self.workers = [Probe.options(num_cpus=0, num_gpus=gpus, scheduling_strategy=PlacementGroupSchedulingStrategy(
            pg, placement_group_bundle_index=int(b), placement_group_capture_child_tasks=True)).remote()
            for b in os.environ["VLLM_RAY_BUNDLE_INDICES"].split(",")]
        return ray.get([w.where.remote() for w in self.workers])


def actor_bundles(actor_id: str) -> set[int]:
    """The placement-group bundle indices an actor's resource request names (``CPU_group_<b>_<pg>``),
    read from the GCS actor table (Ray's public state API needs the dashboard, which tests leave off)."""
    from ray._private.state import state
    from ray.core.generated import gcs_pb2

    data = gcs_pb2.ActorTableData.FromString(state.get_actor_info(ray.ActorID.from_hex(actor_id)))
    names = list(data.required_resources)
    found = {int(m.group(1)) for m in (re.search(r"_group_(\d+)_[0-9a-f]+$", n) for n in names) if m}
    assert found, f"actor {actor_id}: no bundle in its resource request {names}"
    return found


def test_the_8_gpu_plan_on_a_ray_with_8_fake_gpus_co_locates_each_bundle_on_one_gpu():
    from aletheia_ray.actors.colocation import Colocation
    from aletheia_ray.actors.group import ActorGroup

    plan = eight_gpu().colocated_plan()
    temp_dir = tempfile.mkdtemp(prefix="p4co", dir="/tmp")  # short: Ray's socket paths
    ray.init(num_cpus=64, num_gpus=8, include_dashboard=False, log_to_driver=False, _temp_dir=temp_dir)
    try:
        colocation = Colocation(plan, ready_timeout_s=60)
        pg_id = colocation.placement_group.id.hex()
        assert ray.available_resources().get("GPU", 0) == 0  # the group holds all 8
        group = ActorGroup("probes", placement_group=colocation.placement_group)
        learner = colocation.learner_kwargs()  # what LearnerGroup gives each rank
        probes = {f"learner:{r}": group.launch(Probe, bundle_index=r, options={
            "num_cpus": learner["num_cpus_per_rank"], "num_gpus": learner["num_gpus_per_rank"]}) for r in range(8)}
        engines = {}
        for slot in plan.engines:  # what RolloutPool._launch gives each engine
            engines[slot.index] = group.launch(Probe, bundle_index=slot.bundle_index, capture_child_tasks=True, options={
                "num_cpus": slot.num_cpus, "num_gpus": slot.num_gpus, "runtime_env": {"env_vars": dict(slot.env)}})
            probes[f"rollout:{slot.index}"] = engines[slot.index]
        probes["reference:0"] = group.launch(Probe, **colocation.reference_launch())
        where = dict(zip(probes, ray.get([p.where.remote() for p in probes.values()])))
        workers = ray.get([engines[e].start_tp_workers.remote() for e in range(4)])
        for e, ws in enumerate(workers):
            for w, info in enumerate(ws):
                where[f"rollout_worker:{2 * e + w}"] = info
        bundles = {info["actor_id"]: actor_bundles(info["actor_id"]) for info in where.values()}
        by_bundle: dict[int, list[str]] = {}
        for role, info in where.items():
            assert info["placement_group_id"] == pg_id, role
            (b,) = bundles[info["actor_id"]]
            by_bundle.setdefault(b, []).append(role)
        assert {b: sorted(r) for b, r in by_bundle.items()} == {b: sorted(r) for b, r in
                                                                enumerate(plan.roles_by_bundle())}
        assert len({info["node_id"] for info in where.values()}) == 1  # STRICT_PACK: one node
        gpu_of_bundle = {}
        for role, info in where.items():
            b = next(iter(bundles[info["actor_id"]]))
            if role.startswith("rollout:"):  # TP > 1: the engine actor itself asks no GPU
                assert info["gpu_ids"] == [] and info["env"]["VLLM_RAY_BUNDLE_INDICES"] == f"{b},{b + 1}"
                continue
            assert len(info["gpu_ids"]) == 1, (role, info)  # a fraction of ONE GPU: the bundle's
            assert gpu_of_bundle.setdefault(b, info["gpu_ids"][0]) == info["gpu_ids"][0], (role, b)
        assert len(set(gpu_of_bundle.values())) == 8  # 8 bundles, 8 different GPUs
        group.shutdown()
        colocation.shutdown()
        deadline = time.monotonic() + 30  # removing a placement group returns its GPUs asynchronously
        while ray.available_resources().get("GPU") != 8 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ray.available_resources().get("GPU") == 8
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


# ---------------------------------------------------------------- (c) a real colocated CPU training run

def _ops(log: list[dict]) -> list[str]:
    """The engine's calls in order: op (+ level / woken tags), repeated weight-bucket loads as one."""
    out = []
    for entry in log:
        op = entry["op"] + (f"({','.join(entry['tags'])})" if "tags" in entry else "")
        if not (op == "load_weights" and out and out[-1] == op):
            out.append(op)
    return out


@pytest.mark.slow
def test_a_colocated_cpu_run_shares_one_placement_group_and_sleeps_the_engine_while_training(tmp_path):
    from aletheia_ray.actors.cluster import ray_session
    from aletheia_ray.actors.controller import Trainer

    steps = 3
    cfg = load_config(SYNTHETIC_CONFIG, [
        f"output_dir={tmp_path / 'run'}", "colocate.enabled=true", "colocate.num_gpus_per_bundle=0",
        "colocate.num_cpus_per_bundle=0.9", "cold_start.steps=2", f"trainer.total_steps={steps}",
        "trainer.save_steps=0", "trainer.save_final=false", "evaluation.enabled=false", "reference.sync_steps=2",
        "logging.wandb=disabled", "logging.progress=false"], schema=TrainConfig)
    # Ray's default temp dir is removed after a clean exit (kept and named on stderr after an error)
    with ray_session(None, None, None, prefix="p4tr", log_to_driver=False):
        trainer = Trainer(cfg)
        try:
            trainer.start()
            summary = trainer.run()
            pg_id = trainer.colocation.placement_group.id.hex()
            learner = trainer.learner.placements()
            engine = trainer.rollout.engine_info[0]
            reference = ray.get(trainer.reference.placement.remote())
            ids = {"learner:0": trainer.learner.ranks[0]._actor_id.hex(),
                   "learner:1": trainer.learner.ranks[1]._actor_id.hex(),
                   "rollout:0": trainer.rollout.engines[0]._actor_id.hex(),
                   "reference:0": trainer.reference._actor_id.hex()}
            bundles = {role: actor_bundles(actor_id) for role, actor_id in ids.items()}
            ops = _ops(ray.get(trainer.rollout.engines[0].activity_log.remote()))
            awake = ray.get(trainer.rollout.engines[0].info.remote())["asleep"]
        finally:
            trainer.shutdown()
    # every GPU role in the one shared group, in the bundles the plan names
    assert [p["placement_group_id"] for p in learner] == [pg_id, pg_id]
    assert engine["placement_group_id"] == pg_id and reference["placement_group_id"] == pg_id
    expected = {role: b for b, roles in enumerate(cfg.colocated_plan().roles_by_bundle()) for role in roles}
    assert bundles == {role: {expected[role]} for role in ids}
    # cold start: sleep -> (SFT) -> wake weights -> load -> wake KV cache; then per step: generate ->
    # sleep -> (reference, update) -> wake weights -> load -> wake KV cache
    sync = ["wake_up(weights)", "load_weights", "wake_up(kv_cache)"]
    assert ops == ["sleep", *sync] + ["generate", "sleep", *sync] * steps, ops
    assert awake == []  # left awake for whatever generates next (evaluation, a resumed run)
    assert summary["final_step"] == steps
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    for row in rows:
        assert "actor/skipped_update" not in row
        values = {k: v for k, v in row.items() if isinstance(v, float)}
        assert values and all(math.isfinite(v) for v in values.values()), row
        assert row["train/updates"] == row["step"]  # one update per step, the engine asleep during it
