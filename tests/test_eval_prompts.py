"""aletheia_ray.eval_prompts: prompt plans (list / pair / both orders), the too-long policy,
prediction rows in the foundations' format (scored by the real scorer), position bias."""
import json
from math import comb

import pytest

from aletheia_ray.batch import Generation
from aletheia_ray.data.lists import load_lists
from aletheia_ray.data.records import VerifierList
from aletheia_ray.eval_prompts import (EvalPlanError, EvalPrompt, generation_stats, plan_eval_prompts,
                                        position_bias, prediction_rows, split_pair_orders, write_jsonl)
from aletheia_ray.evaluation import load_predictions, score_predictions
from aletheia_ray.models import resolve_model_path
from aletheia_ray.prompts import THINK_OPEN, build_messages, prompt_token_ids
from fixture_paths import SHARED_DATA

FIXTURE = str(SHARED_DATA / "humaneval_lists_dev.jsonl")


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_path("embedded:tiny"))


@pytest.fixture(scope="module")
def lists():
    return load_lists(FIXTURE)[:12]


def make_list(idx, pass_rates, candidates=None):
    pos = pass_rates.index(1.0)
    cands = candidates or [f"def f():\n    return {k}\n" for k in range(len(pass_rates))]
    return VerifierList(idx=idx, query="Return the right number.", candidates=cands, pass_rates=pass_rates,
                        chosen_position=pos, chosen_answer="ABCDE"[pos])


def gen(k, text, n_tokens=3, finish="stop"):
    return Generation(prompt_index=k, prompt_ids=[1], response_ids=list(range(n_tokens)), text=text,
                      finish_reason=finish, rollout_logprobs=[0.0] * n_tokens)


def box(letter):
    return f"<think>hm</think>\\boxed{{{letter}}}"


def test_list_plan_renders_one_prompt_per_list_with_the_chat_template(tokenizer, lists):
    plan = plan_eval_prompts(lists, tokenizer, mode="list", style="instruct", max_prompt_tokens=10_000, progress=False)
    assert [p.idx for p in plan.prompts] == [str(lst.idx) for lst in lists]
    assert all(p.pair is None for p in plan.prompts)
    expected = prompt_token_ids(tokenizer, build_messages(lists[3], style="instruct", mode="list"))
    assert plan.prompts[3].token_ids == expected
    assert tokenizer.decode(expected).startswith("<|im_start|>user\n")
    report = plan.report()
    assert report["n_prompts"] == len(lists) and report["n_lists_skipped_too_long"] == 0 and report["too_long"] == []


@pytest.mark.parametrize("prompt_format", ["standard", "synthetic"])
@pytest.mark.parametrize("style", ["think", "instruct"])
def test_eval_prompts_equal_the_trainers_prompts(tokenizer, prompt_format, style):
    from aletheia_ray.data.synthetic import make_synthetic_lists
    from aletheia_ray.tasks.verifier_lists import verifier_prompt_ids

    lsts = make_synthetic_lists(5, num_candidates=[2, 3], seed=7)
    plan = plan_eval_prompts(lsts, tokenizer, style=style, prompt_format=prompt_format, max_prompt_tokens=10_000,
                             progress=False)
    synthetic = prompt_format == "synthetic"
    assert [p.token_ids for p in plan.prompts] == [
        verifier_prompt_ids(lst, tokenizer, style=style, synthetic=synthetic) for lst in lsts]
    if synthetic:
        assert "A: print(" in tokenizer.decode(plan.prompts[0].token_ids)
        with pytest.raises(EvalPlanError, match="list mode only"):
            plan_eval_prompts(lsts, tokenizer, mode="pair", prompt_format="synthetic", max_prompt_tokens=10_000)


def test_think_prefill_is_appended_to_every_prompt(tokenizer, lists):
    plain = plan_eval_prompts(lists[:2], tokenizer, max_prompt_tokens=10_000, progress=False)
    filled = plan_eval_prompts(lists[:2], tokenizer, max_prompt_tokens=10_000, prefill=THINK_OPEN, progress=False)
    for a, b in zip(plain.prompts, filled.prompts):
        assert b.token_ids[: len(a.token_ids)] == a.token_ids
        assert tokenizer.decode(b.token_ids[len(a.token_ids):]) == THINK_OPEN


def test_pair_plan_issues_every_pair_as_its_own_prompt(tokenizer, lists):
    plan = plan_eval_prompts(lists, tokenizer, mode="pair", max_prompt_tokens=10_000, progress=False)
    assert len(plan.prompts) == sum(comb(len(lst.candidates), 2) for lst in lists)
    first = [p for p in plan.prompts if p.idx == str(lists[0].idx)]
    n = len(lists[0].candidates)
    assert [p.pair for p in first] == [(i, j) for i in range(n) for j in range(i + 1, n)]
    both = plan_eval_prompts(lists, tokenizer, mode="pair", both_orders=True, max_prompt_tokens=10_000, progress=False)
    assert len(both.prompts) == 2 * len(plan.prompts)
    pairs = {(p.idx, p.pair) for p in both.prompts}
    assert all((p.idx, p.pair[::-1]) in pairs for p in both.prompts)
    # the reversed prompt shows candidate j as A: different token ids than (i, j)
    by_pair = {(p.idx, p.pair): p.token_ids for p in both.prompts}
    idx = str(lists[0].idx)
    assert by_pair[(idx, (0, 1))] != by_pair[(idx, (1, 0))]


def test_too_long_prompts_stop_the_run_naming_each_list(tokenizer):
    long_code = "def f():\n" + "    x = 1\n" * 400
    lsts = [make_list("short", [1.0, 0.0]), make_list("long", [0.0, 1.0], [long_code, "def f():\n    return 1\n"])]
    with pytest.raises(EvalPlanError) as err:
        plan_eval_prompts(lsts, tokenizer, max_prompt_tokens=600, progress=False)
    msg = str(err.value)
    assert "idx='long'" in msg and "'short'" not in msg and "600" in msg and "skip" in msg


def test_skip_policy_reports_every_skipped_list_and_pair_mode_skips_whole_lists(tokenizer):
    long_code = "def f():\n" + "    x = 1\n" * 400
    lsts = [make_list("short", [1.0, 0.0, 0.5]),
            make_list("long", [0.0, 1.0, 0.5], [long_code, "def f():\n    return 1\n", "def f():\n    return 2\n"])]
    plan = plan_eval_prompts(lsts, tokenizer, mode="pair", max_prompt_tokens=600, too_long="skip", progress=False)
    # only pairs (0,1) and (0,2) of "long" are over the limit, yet none of its pairs is generated
    assert {p.idx for p in plan.prompts} == {"short"} and len(plan.prompts) == 3
    report = plan.report()
    assert report["n_lists_skipped_too_long"] == 1 and plan.skipped_lists == ["long"]
    assert [t["pair"] for t in report["too_long"]] == [[0, 1], [0, 2]]
    assert all(t["prompt_tokens"] > 600 for t in report["too_long"])


def test_bad_arguments_are_errors(tokenizer, lists):
    with pytest.raises(EvalPlanError, match="mode"):
        plan_eval_prompts(lists, tokenizer, mode="tournament", max_prompt_tokens=100)
    with pytest.raises(EvalPlanError, match="policy"):
        plan_eval_prompts(lists, tokenizer, too_long="truncate", max_prompt_tokens=100)
    with pytest.raises(EvalPlanError, match="pair mode"):
        plan_eval_prompts(lists, tokenizer, both_orders=True, max_prompt_tokens=100)
    with pytest.raises(EvalPlanError, match="max_new_tokens"):
        plan_eval_prompts(lists, tokenizer, max_prompt_tokens=0)
    with pytest.raises(EvalPlanError, match="duplicate list idx"):
        plan_eval_prompts([lists[0], lists[0]], tokenizer, max_prompt_tokens=10_000, progress=False)


def test_prediction_rows_group_samples_and_score_with_the_real_scorer(tmp_path):
    lsts = [make_list("a", [1.0, 0.2, 0.0]), make_list("b", [0.1, 1.0])]
    prompts = [EvalPrompt("a", None, [1, 2]), EvalPrompt("b", None, [3])]
    # generations arrive grouped by prompt but in any prompt order
    gens = [gen(1, box("B")), gen(1, box("A")), gen(0, box("A")), gen(0, "no verdict")]
    rows = prediction_rows(prompts, gens, n=2)
    assert rows == [{"idx": "a", "completions": [box("A"), "no verdict"]},
                    {"idx": "b", "completions": [box("B"), box("A")]}]
    path = write_jsonl(rows, tmp_path / "predictions.jsonl")
    assert [json.loads(line) for line in path.read_text().splitlines()] == rows
    m = score_predictions(lsts, load_predictions(path))
    assert m["list_acc"] == 1.0 and m["parse_rate"] == 0.75 and m["sc_at_k"]["2"] == 1.0
    assert m["problems"]["lists_without_predictions"]["count"] == 0


def test_prediction_rows_refuse_missing_or_stray_generations():
    prompts = [EvalPrompt("a", (0, 1), [1]), EvalPrompt("a", (0, 2), [1])]
    with pytest.raises(ValueError, match=r"prompt 1 \(idx='a' pair=\[0, 2\]\) got 1 generations, expected 2"):
        prediction_rows(prompts, [gen(0, "x"), gen(0, "y"), gen(1, "z")], n=2)
    with pytest.raises(ValueError, match="prompt_index 5"):
        prediction_rows(prompts, [gen(5, "x")], n=1)


def test_both_orders_split_into_two_files_that_each_score(tmp_path):
    lst = make_list("a", [1.0, 0.5, 0.0])
    prompts = [EvalPrompt("a", p, [1]) for p in [(0, 1), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1)]]
    # a perfectly position-biased judge: always "A"
    rows = prediction_rows(prompts, [gen(k, box("A")) for k in range(6)], n=1)
    forward, reverse = split_pair_orders(rows)
    assert [r["pair"] for r in forward] == [[0, 1], [0, 2], [1, 2]]
    assert [r["pair"] for r in reverse] == [[1, 0], [2, 0], [2, 1]]
    fwd = score_predictions([lst], load_predictions(write_jsonl(forward, tmp_path / "f.jsonl")))
    rev = score_predictions([lst], load_predictions(write_jsonl(reverse, tmp_path / "r.jsonl")))
    assert fwd["kendall_tau_b"] == pytest.approx(1.0) and rev["kendall_tau_b"] == pytest.approx(-1.0)
    assert fwd["problems"]["invalid_pairs"]["count"] == rev["problems"]["invalid_pairs"]["count"] == 0
    bias = position_bias(rows, style="think")
    assert bias["pair_first_position_rate"] == 1.0 and bias["order_consistency"] == 0.0
    assert bias["n_pairs_both_orders"] == 3


def test_position_bias_of_a_consistent_judge():
    rows = [{"idx": "a", "pair": [0, 1], "completions": [box("A")]},
            {"idx": "a", "pair": [1, 0], "completions": [box("B")]},
            {"idx": "a", "pair": [0, 2], "completions": ["unparseable"]},
            {"idx": "a", "pair": [2, 0], "completions": [box("A")]}]
    bias = position_bias(rows, style="think")
    assert bias == {"pair_first_position_rate": 2 / 3, "n_pairs_parsed": 3, "n_pairs_both_orders": 2,
                    "order_consistency": 1.0, "n_pairs_both_orders_parsed": 1}
    assert position_bias(rows[:1], style="think")["order_consistency"] is None


def test_generation_stats_use_verl_names():
    gens = [gen(0, "x", 4), gen(0, "y", 8, "length"), gen(1, "z", 0)]
    s = generation_stats(gens, seconds=2.0)
    assert s["response_length/mean"] == 4.0 and s["response_length/max"] == 8
    assert s["response_length/clip_ratio"] == pytest.approx(1 / 3)
    assert s["perf/throughput"] == 6.0 and s["timing_s/gen"] == 2.0 and s["n_generations"] == 3
