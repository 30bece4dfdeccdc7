"""Learning test on real actors: a format-only cold start leaves the policy at chance on the
synthetic task (it must read the candidates); GRPO then raises the mean reward to >= 0.8, and
``aletheia-eval run`` on held-out synthetic lists (disjoint seed) scores ListAcc well above chance.

Seed: ``ALETHEIA_LEARNING_SEED`` (default pinned below; docs/training.md lists the seeds verified).
Run under the heavy lock: ``flock /tmp/aletheia-heavy.lock timeout 1200 pytest tests/test_e2e_learning.py``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from aletheia_ray import checkpoint as ckpt
from aletheia_ray.data.lists import save_lists
from aletheia_ray.data.synthetic import make_synthetic_lists, random_chance_list_acc
from aletheia_ray.tracking import read_metrics
from e2e_helpers import REPO, SYNTHETIC_CONFIG, kill_processes, processes_of, run_train

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("ALETHEIA_LEARNING_SEED", "0"))
STEPS = 60
TRAIN_DATA_SEED, HELDOUT_DATA_SEED = 0, 4242
LEARNING = [f"seed={SEED}", f"trainer.total_steps={STEPS}", "trainer.save_steps=0", "trainer.save_final=true",
            f"data.synthetic.seed={TRAIN_DATA_SEED}", "data.synthetic.num_lists=512",
            "algorithm.prompts_per_step=32", "algorithm.samples_per_prompt=8",
            # a short format-only cold start: 40 steps at lr 3e-3 entrench "ignore the candidates" (measured:
            # GRPO then stayed at chance for 40+ steps); beta 0.05 with a fixed reference also stalled it
            "cold_start.steps=20", "cold_start.targets=random_letter", "learner.lr=3e-3",
            # measured: lr 2e-3 collapsed to one answer per prompt at chance; grad clip 0.3 (seed 1) stayed at
            # chance for 44+ steps with format collapses (docs/training.md)
            # a KL to a reference re-synced every 5 steps keeps the \boxed{} format through gradient spikes
            # (seed 0: parse rate >= 0.99 after step 30 instead of 1-12-step format collapses up to step 50)
            "algorithm.beta=0.05", "reference.sync_steps=5",
            "evaluation.enabled=false", "logging.wandb=disabled"]
EVAL_K = 4


def eval_command() -> list[str]:
    exe = shutil.which("aletheia-eval")
    return [exe] if exe else [sys.executable, "-m", "aletheia_ray.launch.eval"]


def test_cold_start_then_grpo_learns_the_synthetic_task(tmp_path):
    out = tmp_path / "run"
    temp = tempfile.mkdtemp(prefix="h8ray", dir="/tmp")
    try:
        run_train(LEARNING + [f"output_dir={out}", f"ray.temp_dir={temp}"], timeout=1200, config=SYNTHETIC_CONFIG)
    finally:
        kill_processes(processes_of(temp))
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    first = sum(r["reward/mean"] for r in rows[:3]) / 3
    # accuracy of the verdicts given (unparseable samples excluded: those are the cold start's business)
    first_acc = sum(r["reward/list_acc"] for r in rows[:3]) / sum(r["reward/parse_rate"] for r in rows[:3])
    last = sum(r["reward/mean"] for r in rows[-5:]) / 5

    heldout = make_synthetic_lists(128, num_candidates=[2], seed=HELDOUT_DATA_SEED, idx_prefix="heldout")
    # a disjoint seed, not disjoint content: with two candidates the task has only ~10 distinct lists
    # (which letter is right x which distractor letter), so the held-out lists test the learned rule
    # on freshly drawn samples, as the trainer's own evaluation does
    data = save_lists(heldout, tmp_path / "heldout.jsonl")
    hf = ckpt.step_dir(out, STEPS) / "hf"
    eval_out = tmp_path / "eval"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([*eval_command(), "run", "--model", str(hf), "--data", str(data), "--out", str(eval_out),
                           "--prompt-format", "synthetic", "--style", "instruct", "--k", str(EVAL_K),
                           "--temperature", "0.6", "--top-p", "0.95", "--max-new-tokens", "16",
                           "--max-model-len", "512", "--num-cpus", "2", "--seed", str(SEED)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"aletheia-eval run failed ({done.returncode}):\n{done.stderr[-6000:]}"
    m = json.loads((eval_out / "metrics.json").read_text())
    baseline = random_chance_list_acc(heldout)
    print(f"seed {SEED}: reward first3={first:.3f} (list_acc {first_acc:.3f}) last5={last:.3f}; aletheia-eval run: "
          f"list_acc={m['list_acc']:.3f} mean over {EVAL_K} samples={m['list_acc_mean_over_samples']:.3f} "
          f"parse={m['parse_rate']:.3f} (random {baseline:.3f})")
    # two candidates per list: chance is 0.5 (reward 1 correct / 0 wrong / -1 unparseable)
    assert 0.35 <= first_acc <= 0.65, f"GRPO should start near chance (0.5), got list_acc {first_acc:.3f}"
    assert first <= 0.6, f"mean reward should start at or below chance, got {first:.3f}"
    assert last >= 0.8, f"GRPO should reach >= 0.8 mean reward over the last 5 steps, got {last:.3f}"
    assert baseline == pytest.approx(0.5) and m["random_baseline_list_acc"] == pytest.approx(baseline)
    assert m["n_lists"] == 128 and m["samples_per_list"] == EVAL_K
    assert m["list_acc"] >= baseline + 0.25, f"held-out ListAcc {m['list_acc']:.3f} vs random {baseline:.3f}"
    assert m["list_acc_mean_over_samples"] >= baseline + 0.25
