"""Learning tests for two recipes of the paper on the synthetic CPU task (configs/debug_cpu_synthetic.yaml's
actors and model), each from a format-only cold start (``cold_start.targets=random_letter``) that leaves the
policy at chance:

* RAFT (``algorithm.loss=raft``: on-policy samples, at most 5 positives per prompt group, NLL on them, no
  KL/reference) takes the trainer's own held-out ListAcc (``evaluation.enabled``) from chance (0.5, two
  candidates) to >= 0.8;
* PairEM (``data.kind=pairs``, ``reward.fn=pair_em``) on synthetic lists written to JSONL takes held-out
  pairwise accuracy (both orders of every pair of lists of a disjoint seed, ``aletheia-eval run``) from
  chance (0.5) to >= 0.8. The update is RAFT's (keep the PairEM-positive samples, NLL on them): GRPO with
  the PairEM reward (the paper's PairEM row) stayed at chance here (measured: see that test).

Seeds are pinned (``ALETHEIA_RECIPES_SEED``, default below); the measured values are in each test's
docstring. Run under the heavy lock:
``flock /tmp/aletheia-heavy.lock timeout 900 pytest tests/test_e2e_recipes.py -s``.
"""
from __future__ import annotations

import json
import os
import time

import pytest

from aletheia_ray import checkpoint as ckpt
from aletheia_ray.data.lists import save_lists
from aletheia_ray.data.synthetic import make_synthetic_lists
from aletheia_ray.tracking import read_metrics
from e2e_helpers import SYNTHETIC_CONFIG, run_eval, run_train_in_own_ray, verdict_accuracy

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("ALETHEIA_RECIPES_SEED", "0"))
SAMPLES = 8  # per prompt
MAX_POSITIVES = 5  # RAFT's cap per prompt group (the paper's)
MAX_NEW_TOKENS = 16  # debug_cpu_synthetic.yaml's rollout.max_new_tokens
# RAFT's entry has no eps/beta: unset the GRPO settings of the base config (null = unset)
RAFT_ALGORITHM = ["algorithm.loss=raft", "algorithm.eps_low=null", "algorithm.eps_high=null", "algorithm.beta=null",
                  f"algorithm.max_positives_per_group={MAX_POSITIVES}", f"algorithm.samples_per_prompt={SAMPLES}"]
COMMON = [f"seed={SEED}", "cold_start.targets=random_letter", "trainer.save_steps=0", "logging.wandb=disabled"]


def seconds_per_step(rows: list[dict]) -> float:
    """Mean step wall time without step 1 (vLLM warm-up)."""
    later = rows[1:] or rows
    return sum(r["timing_s/step"] for r in later) / len(later)


def run_shape(rows: list[dict]) -> str:
    """Steps, s/step and the samples RAFT's filter kept at the first and last 3 steps (for the printout)."""
    return (f"{len(rows)} steps, {seconds_per_step(rows):.2f} s/step; kept per step first3 "
            f"{[r['filter/kept_samples'] for r in rows[:3]]} last3 {[r['filter/kept_samples'] for r in rows[-3:]]}")


def assert_raft_filter(rows: list[dict], prompts_per_step: int) -> None:
    """The sample filter on real values: at most 5 positives per group, only positives, only those trained."""
    n = prompts_per_step * SAMPLES
    for r in rows:
        kept, step = r["filter/kept_samples"], r["step"]
        assert kept == int(kept) and 0 <= kept <= MAX_POSITIVES * prompts_per_step, (step, kept)
        # a kept sample has reward > 0: a correct verdict (list_acc counts correct samples)
        assert kept <= round(r["reward/list_acc"] * n), (step, kept, r["reward/list_acc"])
        assert r["filter/kept_frac"] == pytest.approx(kept / n), step
        assert 0 <= r["filter/groups_without_samples"] <= prompts_per_step, step
        if kept:  # the update saw the kept samples' tokens only (each 1..max_new_tokens long)
            assert kept <= r["actor/num_tokens"] <= kept * r["response_length/max"], (step, r["actor/num_tokens"])
        # NLL on selected samples: no ratio, no reference, no KL
        assert "timing_s/old_logprob" not in r and "timing_s/ref" not in r and "actor/kl" not in r, step
    # the cap binds once the policy is mostly right: some step keeps exactly 5 per group
    assert max(r["filter/kept_samples"] for r in rows) == MAX_POSITIVES * prompts_per_step


# ---- RAFT on the listwise synthetic task ----------------------------------------------------------

RAFT_STEPS, RAFT_PROMPTS, RAFT_EVAL_LISTS = 30, 32, 128
RAFT_RUN = [*COMMON, *RAFT_ALGORITHM, f"trainer.total_steps={RAFT_STEPS}", "trainer.save_final=false",
            "data.synthetic.num_lists=512", f"algorithm.prompts_per_step={RAFT_PROMPTS}",
            "cold_start.steps=20", "learner.lr=3e-3",
            "evaluation.enabled=true", f"evaluation.num_lists={RAFT_EVAL_LISTS}"]


def test_raft_learns_the_synthetic_task(tmp_path):
    """RAFT from a format-only cold start to held-out ListAcc >= 0.8 (trainer evaluation: 128 lists of
    another data seed, one sample each at T=0.6, top-p 0.95).

    Measured (2026-12-07, this 2-core machine; settings as in RAFT_RUN: 20 cold-start steps, 30 RAFT
    steps of 32 prompts x 8 samples, lr 3e-3, grad clip 1.0):
    - seed 0 (pinned), five runs, the same values each time: accuracy of the parsed verdicts 0.509 over
      steps 1-3 (chance 0.5), 0.40-0.63 up to step 8, >= 0.91 from step 11, 0.994 over the last 5;
      held-out eval/list_acc 1.000 (parse rate 1.000); kept samples 92, 101, 85 at steps 1-3, then
      160 (= 5 x 32, the cap) at every step from 21 on; 0.77-0.85 s per step, 51-56 s for the whole
      test. lr 3e-3 spikes the gradient (norm 4.5 at step 14, 11.5 at 19) and the \\boxed{} format
      drops for one step (parse rate 0.52, 0.41; kept 91, 20), then recovers.
    - other seeds, same settings: seed 1 and seed 3 held-out 1.000 (accuracy >= 0.9 from steps 23 and
      21); seed 2 fails at 30 steps (near chance until step ~24, format lost at steps 26-29, held-out
      0.758) and reaches 1.000 with 50 steps. NOT robust across seeds at 30 steps; seed 0 has ~20 steps
      of margin and reproduced exactly.
    """
    t0 = time.monotonic()
    out = tmp_path / "run"
    _, leftovers = run_train_in_own_ray(RAFT_RUN, out, config=SYNTHETIC_CONFIG, timeout=600)
    rows = read_metrics(out)
    summary = json.loads((out / "summary.json").read_text())
    total = time.monotonic() - t0
    first_acc, last_acc = verdict_accuracy(rows[:3]), verdict_accuracy(rows[-5:])
    print(f"RAFT seed {SEED}: list_acc (parsed) first3={first_acc:.3f} last5={last_acc:.3f}; held-out "
          f"eval/list_acc={summary['eval/list_acc']:.3f} (parse {summary['eval/parse_rate']:.3f}, random "
          f"{summary['eval/random_baseline']:.3f}); {run_shape(rows)}; test {total:.0f} s")
    assert [r["step"] for r in rows] == list(range(1, RAFT_STEPS + 1))
    assert leftovers == []
    assert_raft_filter(rows, RAFT_PROMPTS)
    # two candidates per list: chance is 0.5
    assert 0.35 <= first_acc <= 0.65, f"RAFT should start near chance (0.5), got list_acc {first_acc:.3f}"
    assert summary["eval/random_baseline"] == pytest.approx(0.5) and summary["eval/num_lists"] == RAFT_EVAL_LISTS
    assert summary["eval/list_acc"] >= 0.8, f"held-out ListAcc {summary['eval/list_acc']:.3f} < 0.8"


# ---- PairEM on synthetic lists (data.kind pairs) ---------------------------------------------------

PAIR_STEPS, PAIR_PROMPTS, PAIR_EVAL_K = 40, 32, 4
TRAIN_DATA_SEED, HELDOUT_DATA_SEED = 0, 4242
PAIR_RUN = [*COMMON, *RAFT_ALGORITHM, "data.kind=pairs", "reward.fn=pair_em", f"trainer.total_steps={PAIR_STEPS}",
            "trainer.save_final=true", f"algorithm.prompts_per_step={PAIR_PROMPTS}", "cold_start.steps=20",
            "learner.lr=3e-3", "evaluation.enabled=false"]  # data.kind pairs has no in-trainer held-out set


def test_pair_em_learns_the_pairwise_synthetic_task(tmp_path):
    """PairEM (``data.kind=pairs``, ``reward.fn=pair_em``) on 256 synthetic lists = 512 training pairs
    (both orders of each pair), from a format-only cold start to held-out pairwise accuracy >= 0.8
    (chance 0.5 + 0.3): ``aletheia-eval run --pairwise --both-orders`` on the final checkpoint, 64 lists of
    another data seed (the trainer's pairwise prompts), 4 samples per pair and order.

    Why slower than the listwise task: the two orders of a pair hold the same tokens, so the verdict
    must depend on *where* the candidate that prints a label letter (not V-Z) stands, a position binding
    the listwise task does not need (there the right label also occurs inside its program). Offline
    probe: plain supervised NLL on the correct verdicts after the same cold start learned it after 16
    and 23 updates, or not within 40, depending on the batch order.

    Measured (2026-12-07, this 2-core machine; settings as in PAIR_RUN: 20 cold-start steps, 40 steps of
    32 prompts x 8 samples, RAFT's update, lr 3e-3):
    - seed 0 (pinned): accuracy of the parsed pair verdicts 0.507 over steps 1-3 (chance 0.5), 0.35-0.69
      up to step 24, >= 0.94 from step 26 (parse rate 0.71-0.82 at steps 26-27), 0.998 over the last 5;
      held-out pair_acc 1.000 in both orders (parse 1.000, order consistency 1.0); kept samples 101, 84,
      102 at steps 1-3, 160 (the cap) from step 30; 1.59-1.76 s per step, training 94-103 s,
      aletheia-eval ~23 s, the whole test 117-129 s. Reproduced exactly (the same rewards every step) in
      all five runs.
    - tried and failed: GRPO + PairEM (the learning test's recipe: KL beta 0.05 to a reference re-synced
      every 5 steps), seed 0, 40 steps: at chance throughout (last 5: 0.48), entropy 0.70 -> 0.04 and
      every group zero-std by the end, held-out 0.45/0.55; 5.4 s per step. RAFT seed 1: at chance for
      all 40 steps (held-out 0.56/0.60), with lr 5e-3 too (0.45/0.55). RAFT seed 3: learns from step
      37, but the 40th update broke the format (held-out parse rate 0, pair_acc 0). Seed 2: learns from
      step 33, held-out 1.000. 16 prompts per step (seed 0): right when parsed from step 27 but the
      parse rate fell to 0.24-0.55 (held-out 0.45/0.55). A 10-step cold start: no format at all (parse
      rate 0 for 20 steps, nothing for RAFT to keep). 30 steps (seed 0): held-out 1.000 but only 4
      steps after learning set in; 40 adopted for margin. NOT robust across seeds (2 of 4 pass).
    """
    t0 = time.monotonic()
    train = save_lists(make_synthetic_lists(256, num_candidates=[2], seed=TRAIN_DATA_SEED), tmp_path / "train.jsonl")
    # a disjoint seed, not disjoint content: two candidates give ~10 distinct lists (see test_e2e_learning.py)
    heldout = save_lists(make_synthetic_lists(64, num_candidates=[2], seed=HELDOUT_DATA_SEED, idx_prefix="heldout"),
                         tmp_path / "heldout.jsonl")
    out = tmp_path / "run"
    _, leftovers = run_train_in_own_ray([*PAIR_RUN, f"data.train_path={train}"], out, config=SYNTHETIC_CONFIG,
                                        timeout=600)
    rows = read_metrics(out)
    summary = json.loads((out / "summary.json").read_text())
    train_s = time.monotonic() - t0
    m = run_eval(["--model", str(ckpt.step_dir(out, PAIR_STEPS) / "hf"), "--data", str(heldout), "--pairwise",
                  "--both-orders", "--style", "instruct", "--k", str(PAIR_EVAL_K), "--temperature", "0.6",
                  "--top-p", "0.95", "--max-new-tokens", str(MAX_NEW_TOKENS), "--max-model-len", "512",
                  "--num-cpus", "2", "--seed", str(SEED)], tmp_path / "eval")
    rev, bias = m["reversed_order"], m["position_bias"]
    heldout_acc = (m["pair_acc"] + rev["pair_acc"]) / 2  # the same 64 pairs, shown A-B and B-A
    total = time.monotonic() - t0
    first_acc, last_acc = verdict_accuracy(rows[:3]), verdict_accuracy(rows[-5:])
    print(f"PairEM seed {SEED}: pair acc (parsed) first3={first_acc:.3f} last5={last_acc:.3f}; held-out pair_acc "
          f"{heldout_acc:.3f} (in order {m['pair_acc']:.3f}, reversed {rev['pair_acc']:.3f}; parse "
          f"{m['pair_parse_rate']:.3f}/{rev['pair_parse_rate']:.3f}; A-rate {bias['pair_first_position_rate']}, "
          f"order consistency {bias['order_consistency']}); {run_shape(rows)}; training {train_s:.0f} s, "
          f"test {total:.0f} s")
    assert [r["step"] for r in rows] == list(range(1, PAIR_STEPS + 1))
    assert leftovers == []
    assert summary["data/num_lists"] == 512  # training items: both orders of each list's one pair
    assert_raft_filter(rows, PAIR_PROMPTS)
    assert m["n_pairs"] == rev["n_pairs"] == 64 and m["samples_per_pair"] == rev["samples_per_pair"] == PAIR_EVAL_K
    # chance is 0.5: the two orders show the same candidates, so a verdict that does not depend on
    # which candidate is where (the cold-started policy's) is right exactly half the time
    assert 0.35 <= first_acc <= 0.65, f"PairEM should start near chance (0.5), got pair acc {first_acc:.3f}"
    assert heldout_acc >= 0.5 + 0.3, f"held-out pairwise accuracy {heldout_acc:.3f} < chance + 0.3"
    assert min(m["pair_acc"], rev["pair_acc"]) >= 0.7, f"one order is near chance: {m['pair_acc']}, {rev['pair_acc']}"
    assert bias["order_consistency"] >= 0.7  # the same candidate wins whichever order it is shown in
