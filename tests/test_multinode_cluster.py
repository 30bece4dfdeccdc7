"""Multi-node placement on a real two-node Ray cluster started on this machine (tests/local_cluster.py:
``ray start --head`` + ``ray start --address``, each node 2 logical CPUs and 5 FAKE Ray GPUs).

(a) A GPU layout (2 vLLM engines with tensor_parallel_size=2, 4 learner ranks with 1 GPU each, a
    1-GPU reference: 9 of the 10 fake GPUs) placed by our placement code with probe actors in place
    of the models (tests/placement_probe.py), for learner.placement_strategy PACK and SPREAD: each
    probe sits on its bundle's node, an engine's TP workers on one node with distinct GPU ids, no GPU
    id handed to two actors, the ranks packed on one node or spread 2 + 2.
(b) A short CPU training run submitted with ``ray job submit`` to the same cluster, learner ranks
    SPREAD: gloo between ranks of two raylets; the state API shows where every role ran.
"""
from __future__ import annotations

import collections
import json
import math
import re
import sys

import pytest

from aletheia_ray.run_checks import check_run
from aletheia_ray.tracking import read_metrics
from e2e_helpers import REPO, SYNTHETIC_CONFIG, train_command
from local_cluster import local_cluster

NODES = [{"num_cpus": 2, "num_gpus": 5}, {"num_cpus": 2, "num_gpus": 5}]
GPU_LAYOUT = ["rollout.num_engines=2", "rollout.num_gpus_per_engine=2", "rollout.tensor_parallel_size=2",
              "rollout.num_cpus_per_engine=0.5", "learner.num_ranks=4", "learner.num_gpus_per_rank=1",
              "learner.num_cpus_per_rank=0.25", "reference.num_gpus=1", "reference.num_cpus=0.25"]


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(NODES) as c:
        yield c


def place_probes(cluster, tmp_path, overrides: list[str]) -> dict:
    out = tmp_path / "placement.json"
    done = cluster.run([sys.executable, str(REPO / "tests" / "placement_probe.py"), str(out), *overrides],
                       timeout=300, driver=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("strategy", ["PACK", "SPREAD"])
def test_gpu_layout_lands_as_planned_on_two_nodes_with_fake_ray_gpus(cluster, tmp_path, strategy):
    got = place_probes(cluster, tmp_path, [*GPU_LAYOUT, f"learner.placement_strategy={strategy}"])
    nodes = set(got["nodes"])
    assert len(nodes) == 2 and got["strategy"] == strategy

    # learner: rank r in bundle r of one placement group, 1 GPU each, CUDA_VISIBLE_DEVICES set by Ray
    learner = got["learner"]
    for r, rank in enumerate(learner["ranks"]):
        assert rank["role"] == f"learner/rank{r}" and rank["placement_group_id"] == learner["placement_group_id"]
        assert rank["node_id"] == learner["bundle_nodes"][str(r)], f"rank {r} is not on its bundle's node"
        assert len(rank["gpu_ids"]) == 1 and rank["cuda_visible_devices"] == rank["gpu_ids"][0]
    per_node = collections.Counter(rank["node_id"] for rank in learner["ranks"])
    if strategy == "PACK":
        assert sorted(per_node.values()) == [4], per_node  # all ranks on one node
    else:
        assert sorted(per_node.values()) == [2, 2], per_node  # over both nodes: gloo/NCCL between nodes

    # engines: one STRICT_PACK group each; the engine actor (no GPU) and its TP workers on one node
    engine_nodes = []
    for i, e in enumerate(got["engines"]):
        assert e["strategy"] == "STRICT_PACK" and e["bundles"] == [{"CPU": 0.5, "GPU": 1.0}, {"GPU": 1.0}]
        (node,) = set(e["bundle_nodes"].values())  # STRICT_PACK: every bundle on one node
        engine, workers = e["engine"], e["tp_workers"]
        assert engine["role"] == f"engine{i}" and engine["node_id"] == node
        assert engine["placement_group_id"] == e["placement_group_id"] and engine["gpu_ids"] == []
        assert [w["bundle_index"] for w in workers] == [0, 1]
        for w in workers:
            assert w["placement_group_id"] == e["placement_group_id"] and w["node_id"] == node
            # vLLM keeps Ray off CUDA_VISIBLE_DEVICES and picks the device from the GPU ids it collects
            assert len(w["gpu_ids"]) == 1 and w["cuda_visible_devices"] is None
        assert len({w["gpu_ids"][0] for w in workers}) == 2, f"engine {i}: TP workers share a GPU"
        engine_nodes.append(node)
    if strategy == "PACK":  # the learner filled one node: both engines on the other
        assert len(set(engine_nodes)) == 1 and engine_nodes[0] not in per_node
    else:  # 3 GPUs left per node: one 2-GPU engine fits on each
        assert set(engine_nodes) == nodes

    # reference: no placement group, its own GPU
    ref = got["reference"]
    assert ref["placement_group_id"] is None and len(ref["gpu_ids"]) == 1 and ref["node_id"] in nodes

    # no fractional GPUs in this layout: no (node, GPU id) given to two actors
    holders = learner["ranks"] + [w for e in got["engines"] for w in e["tp_workers"]] + [ref]
    taken = [(h["node_id"], g) for h in holders for g in h["gpu_ids"]]
    assert len(taken) == 4 + 2 * 2 + 1 and len(set(taken)) == len(taken), taken
    assert {n for n, _ in taken} == nodes


@pytest.mark.slow
def test_ray_job_submit_trains_with_learner_ranks_on_two_nodes(cluster, tmp_path):
    """CPU run (no GPU asked for): learner ranks SPREAD, so gloo runs between ranks of two raylets."""
    overrides = ["trainer.total_steps=2", "trainer.save_steps=0", "trainer.save_final=false",
                 "cold_start.steps=2", "algorithm.prompts_per_step=8", "data.synthetic.num_lists=16",
                 "evaluation.enabled=false", "logging.wandb=disabled", "logging.progress=false",
                 "learner.placement_strategy=SPREAD", f"output_dir={tmp_path / 'run'}"]
    runtime_env = {"env_vars": {"TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": cluster.env["PYTHONPATH"]}}
    submit = ["ray", "job", "submit", f"--address={cluster.dashboard_url}", f"--runtime-env-json={json.dumps(runtime_env)}",
              "--", *train_command(), "--config", str(SYNTHETIC_CONFIG), *overrides]
    done = cluster.run(submit, timeout=900)
    assert done.returncode == 0 and "succeeded" in done.stdout, done.stdout[-4000:] + done.stderr[-4000:]
    rows = read_metrics(tmp_path / "run")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["final_step"] == 2
    assert [r["step"] for r in rows] == [1, 2] and all(math.isfinite(r["actor/pg_loss"]) for r in rows)
    assert check_run(tmp_path / "run", steps=2, sync_mode="on_policy") == []

    # where the job's actors ran (state API; finished actors are kept with their node)
    job = re.search(r"Job '(raysubmit_\w+)' submitted successfully", done.stdout).group(1)
    names = cluster.nodes()
    roles = collections.defaultdict(list)
    for actor in cluster.actors():
        if actor["class_name"] in ("LearnerRank", "RolloutEngine", "ReferenceActor", "RewardActor"):
            roles[actor["class_name"]].append(names[actor["node_id"]])
    print(f"job {job}: roles by node {dict(roles)}")
    assert len(roles["LearnerRank"]) == 2 and len(set(roles["LearnerRank"])) == 2, roles  # one rank per node
    assert len(roles["RolloutEngine"]) == 1 and len(roles["ReferenceActor"]) == 1 and len(roles["RewardActor"]) == 2
    assert set(names.values()) == {n for where in roles.values() for n in where}
