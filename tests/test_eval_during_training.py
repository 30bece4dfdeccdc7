"""Held-out evaluation during training (``evaluation.every_steps``, ``aletheia_ray/eval_schedule.py``).

Pure parts (no Ray, milliseconds): the schedule, the eval/* metrics over samples scored by the real
scorers, best.json, the tasks' held-out loaders on the shared fixture data and the config checks.
End to end (real actors): a short real-lists run (``configs/debug_cpu.yaml``) that evaluates on
held-out fixture lists (``evaluation.data_path``) every 2 steps, and (slow) ``configs/demo.yaml``,
whose held-out ListAcc must rise well above chance.
Run the end-to-end ones under the heavy lock:
``flock /tmp/aletheia-heavy.lock python3 -m pytest tests/test_eval_during_training.py``.
"""
from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from aletheia_ray import checkpoint as ckpt
from aletheia_ray.batch import Generation
from aletheia_ray.config import ConfigError, load_config
from aletheia_ray.data.lists import load_lists, save_lists
from aletheia_ray.data.synthetic import make_synthetic_lists
from aletheia_ray.eval_schedule import BestCheckpoint, best_step, eval_due, pass_eval_metrics, read_best
from aletheia_ray.models import resolve_model_path
from aletheia_ray.rewards import SampleReward
from aletheia_ray.tracking import read_metrics
from aletheia_ray.train_config import TrainConfig
from e2e_helpers import DEBUG_CONFIG, REPO, SYNTHETIC_CONFIG, run_train_in_own_ray
from fixture_paths import SHARED_DATA

LISTS = SHARED_DATA / "humaneval_lists_dev.jsonl"
PROBLEMS = SHARED_DATA / "humanevalplus_dev.jsonl.gz"
DEMO_CONFIG = REPO / "configs" / "demo.yaml"


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_model_path("embedded:tiny"))


def _scored(lists, answers_per_list, scorer):
    """Generations answering ``answers_per_list[i]`` (one completion per sample) for list i, scored by ``scorer``."""
    gens = []
    for i, (lst, answers) in enumerate(zip(lists, answers_per_list)):
        for text in answers:
            g = Generation(prompt_index=i, prompt_ids=[1], response_ids=[2, 3], text=text, finish_reason="stop",
                           rollout_logprobs=[0.0, 0.0])
            s = scorer.score(text, lst, 2)
            g.reward, g.meta = s.reward, s.to_meta()
            gens.append(g)
    return gens


# ---- pure ------------------------------------------------------------------------------------------

def test_schedule_evaluates_every_n_steps_and_after_the_last():
    assert [s for s in range(1, 31) if eval_due(s, every_steps=10, total_steps=30)] == [10, 20, 30]
    assert [s for s in range(1, 26) if eval_due(s, every_steps=10, total_steps=25)] == [10, 20, 25]
    assert [s for s in range(1, 11) if eval_due(s, every_steps=0, total_steps=10)] == [10]  # as before: the end only


def test_verdict_metrics_are_the_mean_over_samples_and_the_majority_vote(tokenizer):
    cfg = load_config(SYNTHETIC_CONFIG, ["evaluation.num_samples=3", "evaluation.num_lists=3"], schema=TrainConfig)
    task = cfg.data.task
    held = task.heldout(cfg, tokenizer)
    right = [lst.chosen_answer for lst in held.items]
    wrong = ["B" if a == "A" else "A" for a in right]
    # list 0: 3/3 right; list 1: 2/3 right (the vote is right); list 2: 1 right, 1 wrong, 1 unparseable
    answers = [[f"\\boxed{{{right[0]}}}"] * 3, [f"\\boxed{{{right[1]}}}", f"\\boxed{{{wrong[1]}}}", f"\\boxed{{{right[1]}}}"],
               [f"\\boxed{{{wrong[2]}}}", "no verdict", f"\\boxed{{{right[2]}}}"]]
    gens = _scored(held.items, answers, task.scorer(cfg))
    m = task.heldout_metrics(held.items, gens, 3)
    assert m["eval/list_acc"] == pytest.approx(6 / 9)
    assert m["eval/parse_rate"] == pytest.approx(8 / 9)
    assert m["eval/sc_at_3"] == pytest.approx(2 / 3)  # list 2: a tie goes to the first letter, the wrong one
    assert m["eval/random_baseline"] == pytest.approx(0.5) and m["eval/num_lists"] == 3 and m["eval/num_samples"] == 3
    assert set(m) == set(task.eval_keys(3))


def test_pass_metrics_for_code_count_a_problem_with_any_passing_sample():
    samples = [[SampleReward(1.0, True, True, 1.0), SampleReward(0.5, True, False, 0.5)],
               [SampleReward(-1.0, False, False, -1.0), SampleReward(0.0, True, False, 0.0)]]
    gens = []
    for i, per in enumerate(samples):
        for s in per:
            gens.append(Generation(i, [1], [2], "x", "stop", [0.0], reward=s.reward, meta=s.to_meta()))
    m = pass_eval_metrics(gens, 2, k=2)
    assert m["eval/pass_at_1"] == pytest.approx(1 / 4) and m["eval/pass_at_2"] == pytest.approx(1 / 2)
    assert m["eval/pass_rate"] == pytest.approx(1.5 / 4)  # no code block counts 0, not the format penalty
    assert m["eval/parse_rate"] == pytest.approx(3 / 4) and m["eval/num_problems"] == 2


def test_best_json_marks_the_best_save_by_the_latest_eval_and_survives_a_resume(tmp_path):
    best = BestCheckpoint(tmp_path, "eval/list_acc", "max")
    assert best_step(tmp_path) is None
    rec = best.on_save(5)  # no evaluation yet: last only
    assert rec["best"] is None and rec["last"]["step"] == 5 and best_step(tmp_path) is None
    best.observe(10, {"eval/list_acc": 0.6})
    best.on_save(10)
    best.observe(20, {"eval/list_acc": 0.9})
    best.on_save(25)  # judged by the eval at step 20
    best.observe(30, {"eval/list_acc": 0.7})
    rec = best.on_save(30)
    assert rec["best"] == {"step": 25, "dir": "step_000025", "value": 0.9, "eval_step": 20}
    assert rec["last"] == {"step": 30, "dir": "step_000030", "value": 0.7, "eval_step": 30}
    assert read_best(tmp_path) == rec and best_step(tmp_path) == 25
    resumed = BestCheckpoint(tmp_path, "eval/list_acc", "max")  # a resumed run reads it back
    resumed.observe(40, {"eval/list_acc": 0.9})
    assert resumed.on_save(40)["best"]["step"] == 25  # a tie keeps the earlier checkpoint
    low = BestCheckpoint(tmp_path / "min", "eval/parse_rate", "min")
    for step, value in ((1, 0.5), (2, 0.2), (3, 0.4)):
        low.observe(step, {"eval/parse_rate": value})
        low.on_save(step)
    assert best_step(tmp_path / "min") == 2
    with pytest.raises(KeyError, match="evaluation.metric 'eval/list_acc' is not among"):
        best.observe(50, {"eval/pair_acc": 1.0})


def test_real_lists_pairs_and_code_read_their_held_out_set_from_evaluation_data_path(tokenizer):
    lists = load_config(DEBUG_CONFIG, ["evaluation.enabled=true", f"evaluation.data_path={LISTS}",
                                       "evaluation.num_lists=20"], schema=TrainConfig)
    held = lists.data.task.heldout(lists, tokenizer)
    assert len(held.items) == len(held.prompt_ids) == 20 and held.reward_items == held.items
    kept = held.report["data/num_lists"]  # debug_cpu.yaml's filters: 2-3 candidates, <= 640 prompt tokens
    assert all(len(lst.candidates) in (2, 3) and len(ids) <= 640 for lst, ids in zip(held.items, held.prompt_ids))
    assert held.report["data/num_lists_read"] == len(load_lists(LISTS)) and held.report["eval/dropped_num_lists"] == kept - 20
    pairs = load_config(DEBUG_CONFIG, ["data.kind=pairs", "reward.fn=pair_em", "evaluation.enabled=true",
                                       f"evaluation.data_path={LISTS}", "evaluation.num_lists=6"], schema=TrainConfig)
    held_pairs = pairs.data.task.heldout(pairs, tokenizer)
    assert [p.pair for p in held_pairs.items[:2]] == [(0, 1), (1, 0)] and pairs.evaluation.metric == "eval/pair_acc"
    task, scorer = pairs.data.task, pairs.data.task.scorer(pairs)
    gens = _scored(held_pairs.reward_items, [[f"\\boxed{{{task.answer_letter(p)}}}", "\\boxed{A}"]
                                             for p in held_pairs.items], scorer)
    m = task.heldout_metrics(held_pairs.items, gens, 2)  # one right sample + one "A" per pair
    a_right = sum(task.answer_letter(p) == "A" for p in held_pairs.items)
    assert 0 < a_right < 6 and m["eval/pair_acc"] == pytest.approx((6 + a_right) / 12)
    assert m["eval/num_pairs"] == 6 and m["eval/random_baseline"] == 0.5
    assert m["eval/sc_at_2"] == pytest.approx(1.0)  # a 1-1 tie goes to the first sample, the right one
    code = load_config(REPO / "configs" / "debug_cpu_codegen.yaml", ["evaluation.enabled=true",
                       f"evaluation.data_path={PROBLEMS}", "evaluation.num_lists=5"], schema=TrainConfig)
    held_code = code.data.task.heldout(code, tokenizer)
    assert len(held_code.items) == 5 and all(s.inputs or s.tests for s in held_code.reward_items)
    assert code.evaluation.metric == "eval/pass_at_1"


def test_config_errors_name_the_evaluation_key():
    with pytest.raises(ConfigError, match=r"evaluation.metric.*'eval/sc_at_4' is not reported.*num_samples=1"):
        load_config(SYNTHETIC_CONFIG, ["evaluation.metric=eval/sc_at_4"], schema=TrainConfig)
    assert load_config(SYNTHETIC_CONFIG, ["evaluation.metric=eval/sc_at_4", "evaluation.num_samples=4"],
                       schema=TrainConfig).evaluation.metric == "eval/sc_at_4"
    with pytest.raises(ConfigError, match="evaluation.every_steps needs evaluation.enabled=true"):
        load_config(DEBUG_CONFIG, ["evaluation.every_steps=5"], schema=TrainConfig)
    with pytest.raises(ConfigError, match="key 'evaluation.data_path'.*not found"):
        load_config(DEBUG_CONFIG, ["evaluation.enabled=true", "evaluation.data_path=no/such.jsonl"], schema=TrainConfig)
    with pytest.raises(ConfigError, match="key 'evaluation.mode'"):
        load_config(SYNTHETIC_CONFIG, ["evaluation.mode=best"], schema=TrainConfig)


def test_synthetic_held_out_lists_can_come_from_a_file(tokenizer, tmp_path):
    path = save_lists(make_synthetic_lists(8, seed=77, idx_prefix="file"), tmp_path / "held.jsonl")
    cfg = load_config(SYNTHETIC_CONFIG, [f"evaluation.data_path={path}"], schema=TrainConfig)
    held = cfg.data.task.heldout(cfg, tokenizer)
    assert [lst.idx for lst in held.items] == [f"file-77-{i}" for i in range(8)]


# ---- end to end ------------------------------------------------------------------------------------

EVAL_LISTS, EVAL_K = 16, 2  # the fixture lists are the only real ones: the held-out file is the training file
REAL_RUN = ["trainer.total_steps=3", "trainer.save_steps=2", "algorithm.prompts_per_step=4",
            "algorithm.samples_per_prompt=4", "evaluation.enabled=true", "evaluation.every_steps=2",
            f"evaluation.data_path={LISTS}", f"evaluation.num_lists={EVAL_LISTS}",
            f"evaluation.num_samples={EVAL_K}", "logging.wandb=disabled"]


def test_real_lists_run_logs_held_out_eval_every_2_steps_and_marks_the_best_checkpoint(tmp_path):
    out = tmp_path / "run"
    _, leftovers = run_train_in_own_ray(REAL_RUN, out, config=DEBUG_CONFIG)
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3] and leftovers == []
    evaluated = {r["step"]: r for r in rows if "eval/list_acc" in r}
    assert sorted(evaluated) == [2, 3]  # every 2 steps and after the last, in that step's own record
    assert not any(k.startswith("eval/") or k == "timing_s/eval" for k in rows[0])
    for r in evaluated.values():
        assert r["eval/num_lists"] == EVAL_LISTS and r["eval/num_samples"] == EVAL_K
        assert r["eval/parse_rate"] > 0 and 0 <= r["eval/list_acc"] <= r["eval/parse_rate"]
        assert 0 <= r[f"eval/sc_at_{EVAL_K}"] <= 1 and r["timing_s/eval"] > 0
        assert 0.3 < r["eval/random_baseline"] < 0.5  # 2-3 candidates: mean of 1/n
        # the list_acc is a multiple of one sample in 32: 16 lists x 2 samples
        assert r["eval/list_acc"] * EVAL_LISTS * EVAL_K == pytest.approx(round(r["eval/list_acc"] * EVAL_LISTS * EVAL_K))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval/list_acc"] == evaluated[3]["eval/list_acc"]  # the final evaluation, as before
    best = json.loads((out / "checkpoints" / "best.json").read_text())
    want = max((2, 3), key=lambda s: (evaluated[s]["eval/list_acc"], -s))  # ties: the earlier checkpoint
    assert best["metric"] == "eval/list_acc" and best["mode"] == "max"
    assert best["best"]["step"] == want and best["best"]["value"] == evaluated[want]["eval/list_acc"]
    assert best["last"]["step"] == 3 and best["last"]["eval_step"] == 3
    assert (ckpt.step_dir(out, want) / ckpt.COMPLETE).exists() and best_step(out) == want


@pytest.mark.slow
def test_demo_config_learns_held_out_list_acc_well_above_chance(tmp_path):
    """configs/demo.yaml (make demo) as shipped: GRPO's held-out ListAcc, evaluated every 5 steps, starts near
    chance (0.5) and ends >= 0.9; best.json names the first save with the best evaluation."""
    out = tmp_path / "demo"
    _, leftovers = run_train_in_own_ray([], out, config=DEMO_CONFIG)
    rows = read_metrics(out)
    acc = {r["step"]: r["eval/list_acc"] for r in rows if "eval/list_acc" in r}
    print(f"demo held-out eval/list_acc by step: {acc}")
    assert sorted(acc) == list(range(5, 31, 5)) and leftovers == []
    assert acc[5] <= 0.7, "the format-only cold start should leave the policy near chance"
    assert min(acc[20], acc[25], acc[30]) >= 0.9 and rows[-1]["eval/sc_at_4"] >= 0.9
    saves = (10, 20, 30)  # trainer.save_steps 10; judged by the evaluation at the same step
    best = read_best(out)["best"]
    top = max(acc[s] for s in saves)
    assert best["value"] == top and best["step"] == min(s for s in saves if acc[s] == top)
