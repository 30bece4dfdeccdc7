"""The task protocol (no Ray): every data.kind loads through one interface, supplies its prompts,
cold-start targets, reward items and scorer, and the config checks what it accepts."""
from __future__ import annotations

import random

import pytest
from transformers import AutoTokenizer

from aletheia_ray.config import ConfigError, load_config
from aletheia_ray.models import resolve_model_path
from aletheia_ray.prompts import build_messages, prompt_token_ids
from aletheia_ray.rewards import PassRateScorer, VerdictScorer
from aletheia_ray.tasks import TASKS, get_task
from aletheia_ray.tasks.verifier_pairs import VerifierPair
from aletheia_ray.train_config import TrainConfig
from fixture_paths import REPO_ROOT

CONFIGS = REPO_ROOT / "configs"


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_model_path("embedded:tiny"))


def test_registry_names_every_task_and_refuses_unknown_ones():
    assert sorted(TASKS) == ["codegen", "lists", "pairs", "synthetic"]
    with pytest.raises(KeyError, match=r"unknown task 'graphs' \(data.kind\); known tasks"):
        get_task("graphs")
    with pytest.raises(ConfigError, match=r"key 'data.kind'.*'lists', 'synthetic', 'pairs'"):
        load_config(CONFIGS / "debug_cpu.yaml", ["data.kind=graphs"], schema=TrainConfig)


def test_pairs_task_shows_every_pair_in_both_orders_with_pair_em(tokenizer):
    cfg = load_config(CONFIGS / "debug_cpu.yaml", ["data.kind=pairs", "reward.fn=pair_em"], schema=TrainConfig)
    task = cfg.data.task
    data = task.load(cfg, tokenizer)
    assert len(data.items) == len(data.prompt_ids) == len(data.reward_items) == data.report["data/num_lists"] > 0
    shown = {(p.lst.idx, p.pair) for p in data.items}
    kept_orders = [p for p in data.items if (p.lst.idx, p.pair[::-1]) in shown]
    assert len(kept_orders) > 0.9 * len(data.items)  # the token filter may drop one order of a pair
    first = data.items[0]
    assert isinstance(first, VerifierPair) and data.reward_items[0] == (first.lst, first.pair)
    assert data.prompt_ids[0] == prompt_token_ids(tokenizer, build_messages(first.lst, style="instruct", mode="pair",
                                                                            pair=first.pair))
    i, j = first.pair
    right = "A" if first.lst.pass_rates[i] > first.lst.pass_rates[j] else "B"
    assert task.cold_start_text(first, "correct", "instruct", "", random.Random(0)) == f"\\boxed{{{right}}}"
    scorer = task.scorer(cfg)
    assert scorer == VerdictScorer(fn="pair_em", style="instruct", strict=False, overlong=scorer.overlong)
    assert scorer.score(f"\\boxed{{{right}}}", data.reward_items[0], 3).reward == 1.0
    assert scorer.score(f"\\boxed{{{'B' if right == 'A' else 'A'}}}", data.reward_items[0], 3).reward == 0.0
    assert task.random_baseline(data.items) == 0.5


def test_lists_and_codegen_tasks_hand_the_reward_pool_their_scorer():
    lists = load_config(CONFIGS / "debug_cpu.yaml", schema=TrainConfig)
    codegen = load_config(CONFIGS / "debug_cpu_codegen.yaml", schema=TrainConfig)
    assert isinstance(lists.data.task.scorer(lists), VerdictScorer) and not lists.data.task.scorer(lists).runs_code
    assert isinstance(codegen.data.task.scorer(codegen), PassRateScorer) and codegen.data.task.scorer(codegen).runs_code
    no_fn = load_config(CONFIGS / "debug_cpu.yaml", ["reward.fn=null"], schema=TrainConfig)
    assert no_fn.data.task.scorer(no_fn).fn == "list_em"  # the task's default reward


def test_only_a_task_with_a_held_out_set_can_evaluate_at_the_end(tokenizer):
    cfg = load_config(CONFIGS / "debug_cpu_synthetic.yaml", schema=TrainConfig)
    assert cfg.evaluation.enabled and cfg.data.task.has_heldout
    heldout = cfg.data.task.heldout(cfg, tokenizer)
    train = cfg.data.task.load(cfg, tokenizer)
    assert len(heldout.items) == cfg.evaluation.num_lists
    assert not {lst.idx for lst in heldout.items} & {lst.idx for lst in train.items}
    with pytest.raises(ConfigError, match="data.kind 'lists' has no held-out set"):
        load_config(CONFIGS / "debug_cpu.yaml", ["evaluation.enabled=true"], schema=TrainConfig)


def test_cold_start_targets_come_from_the_task():
    assert get_task("codegen").cold_start_targets == ("correct", "stub")
    with pytest.raises(ConfigError, match=r"'stub' does not fit data.kind 'pairs'"):
        load_config(CONFIGS / "debug_cpu.yaml", ["data.kind=pairs", "reward.fn=pair_em", "cold_start.targets=stub"],
                    schema=TrainConfig)


@pytest.mark.parametrize("kind,fn,mode,best", [("lists", "list_sc", "list_score", 2.0),
                                               ("pairs", "pair_sc", "pair_score", 4.2),
                                               ("pairs", "pair_em", "pair", 1.0),
                                               ("lists", "list_em", "list", 1.0)])
def test_score_and_letter_rewards_get_their_prompts_and_cold_start_answers_that_earn_the_most(tokenizer, kind, fn,
                                                                                              mode, best):
    """Round trip: the prompt follows reward.fn, and the 'correct' cold-start answer, scored by the
    task's own scorer, gets the reward's maximum (ListSc 0 + 2; PairSc +1 + 2 + 1 + 0.2)."""
    cfg = load_config(CONFIGS / "debug_cpu.yaml", [f"data.kind={kind}", f"reward.fn={fn}"], schema=TrainConfig)
    task, scorer = cfg.data.task, cfg.data.task.scorer(cfg)
    data = task.load(cfg, tokenizer)
    item = next(i for i in data.items if kind == "lists" or i.lst.pass_rates[i.pair[0]] != i.lst.pass_rates[i.pair[1]])
    k = data.items.index(item)
    lst, pair = (item, None) if kind == "lists" else (item.lst, item.pair)
    assert data.prompt_ids[k] == prompt_token_ids(tokenizer, build_messages(lst, style="instruct", mode=mode, pair=pair))
    answer = task.cold_start_text(item, "correct", "instruct", "", random.Random(0), fn=fn)
    assert scorer.score(answer, data.reward_items[k], 5).reward == pytest.approx(best)
    shuffled = task.cold_start_text(item, "random_letter", "instruct", "", random.Random(1), fn=fn)
    assert scorer.score(shuffled, data.reward_items[k], 5).parsed_ok  # random, but well-formed
