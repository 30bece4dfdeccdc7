"""Reward actors on a real (small) Ray: verdict rewards by config name, one interface, counted penalties."""
from __future__ import annotations

import tempfile

import pytest
import ray

from aletheia_ray.actors.reward import RewardPool
from aletheia_ray.batch import Generation
from aletheia_ray.data.synthetic import make_synthetic_lists
from aletheia_ray.rewards import Overlong, PassRateScorer, VerdictScorer


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=1, include_dashboard=False, _temp_dir=tempfile.mkdtemp(prefix="h8rw", dir="/tmp"))
    yield
    ray.shutdown()


def _gen(index, text, length=3):
    return Generation(prompt_index=index, prompt_ids=[1], response_ids=[5] * length, text=text, finish_reason="stop",
                      rollout_logprobs=[-1.0] * length)


def test_verdict_rewards_over_two_actors_fill_every_generation(local_ray):
    lists = make_synthetic_lists(3, num_candidates=[2], seed=0)
    right = [f"\\boxed{{{lst.chosen_answer}}}" for lst in lists]
    wrong = [f"\\boxed{{{'B' if lst.chosen_answer == 'A' else 'A'}}}" for lst in lists]
    gens = [_gen(0, right[0]), _gen(0, wrong[0]), _gen(1, "I am not sure"), _gen(2, right[2], length=15)]
    scorer = VerdictScorer(fn="list_em", style="instruct", overlong=Overlong(max_len=16, cache=4))
    pool = RewardPool(scorer, num_actors=2, num_cpus_per_actor=0.1)
    try:
        metrics = pool.score(gens, lists)
    finally:
        pool.shutdown()
    assert [g.reward for g in gens] == pytest.approx([1.0, 0.0, -1.0, 1.0 - 0.75])
    assert [g.meta["parsed_ok"] for g in gens] == [True, True, False, True]
    assert gens[2].meta["reason"] and gens[3].meta["overlong_penalty"] == pytest.approx(-0.75)
    assert metrics["reward/num_unparseable"] == 1 and metrics["reward/parse_rate"] == 0.75
    assert metrics["reward/list_acc"] == 0.5


def test_a_scorer_that_runs_code_needs_a_sandbox_pool_and_bad_names_fail_early(local_ray):
    with pytest.raises(ValueError, match="PassRateScorer runs code: it needs a sandbox_pool"):
        RewardPool(PassRateScorer())
    with pytest.raises(KeyError, match="unknown reward"):
        RewardPool(VerdictScorer(fn="nope"))
    pool = RewardPool(VerdictScorer(), num_actors=1)
    try:
        with pytest.raises(IndexError, match="prompt 5"):
            pool.score([_gen(5, "x")], make_synthetic_lists(1))
    finally:
        pool.shutdown()


@pytest.mark.sandbox
def test_pass_rate_rewards_through_the_sandbox_pool_same_interface(local_ray):
    from aletheia_ray.actors.sandbox import SandboxPool
    from aletheia_ray.sandbox.types import StdioTest, Submission

    task = Submission("task-0", "python", "", tests=[StdioTest("3", "9"), StdioTest("4", "16")], time_limit_s=10)
    right = "Here you go:\n```python\nn = int(input())\nprint(n * n)\n```"
    half = "```python\nn = int(input())\nprint(9)\n```"
    gens = [_gen(0, right), _gen(0, half), _gen(0, "print(n * n) without a code block")]
    sandbox = SandboxPool(num_actors=1, num_cpus_per_actor=0.5, submission_timeout_s=120, slot_offset=60)
    pool = RewardPool(PassRateScorer(), sandbox_pool=sandbox)
    try:
        metrics = pool.score(gens, [task])
    finally:
        pool.shutdown()
        sandbox.shutdown()
    assert [g.reward for g in gens] == [1.0, 0.5, -1.0]
    assert [g.meta["parsed_ok"] for g in gens] == [True, True, False]
    assert metrics["reward/num_unparseable"] == 1 and metrics["reward/list_acc"] == pytest.approx(1 / 3)
