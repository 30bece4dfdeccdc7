"""Sync modes as pure policy and the batch plumbing they need (no Ray): on_policy, batch_online
(mini-batches of whole prompt groups), async_tis (TIS cap, pending batch in the checkpoint)."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from aletheia_ray import checkpoint as ckpt
from aletheia_ray.batch import Generation
from aletheia_ray.config import ConfigError, load_config
from aletheia_ray.sync.modes import make_sync_policy
from aletheia_ray.batch import sequences_to_batch
from aletheia_ray.metrics import mean_update_metrics
from aletheia_ray.micro_batches import minibatch_rows
from aletheia_ray.train_config import TrainConfig

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_each_mode_answers_the_controllers_three_questions():
    on = make_sync_policy("on_policy")
    assert (on.updates_per_generation, on.max_staleness, on.tis_cap) == (1, 0, None)
    bo = make_sync_policy("batch_online", updates_per_generation=4)
    assert (bo.updates_per_generation, bo.max_staleness, bo.tis_cap) == (4, 0, None)
    asy = make_sync_policy("async_tis")
    assert (asy.updates_per_generation, asy.max_staleness, asy.tis_cap) == (1, 1, 2.0)
    assert make_sync_policy("async_tis", tis_cap=5.0).tis_cap == 5.0
    assert make_sync_policy("on_policy", tis_cap=1.5).tis_cap == 1.5  # TIS against engine/trainer mismatch


@pytest.mark.parametrize("override, match", [
    ("algorithm.sync_mode=sometimes", "algorithm.sync_mode"),
    ("algorithm.updates_per_generation=4", "needs algorithm.sync_mode=batch_online"),
    ("algorithm.tis_cap=0.5", "algorithm.tis_cap: must be >= 1"),
])
def test_inconsistent_mode_keys_are_named(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(CONFIGS / "debug_cpu.yaml", [override], schema=TrainConfig)


def test_batch_online_needs_a_prompt_group_per_update_and_tis_needs_grpo():
    with pytest.raises(ConfigError, match=r"algorithm.prompts_per_step >= it \(got 2\)"):
        load_config(CONFIGS / "debug_cpu.yaml", ["algorithm.sync_mode=batch_online", "algorithm.prompts_per_step=2",
                                                 "algorithm.updates_per_generation=4"], schema=TrainConfig)
    with pytest.raises(ConfigError, match="'gspo' has no TIS weights"):
        load_config(CONFIGS / "debug_cpu.yaml", ["algorithm.sync_mode=async_tis", "algorithm.loss=gspo"],
                    schema=TrainConfig)


def test_shipped_recipes_for_the_other_modes():
    bo = load_config(CONFIGS / "bo_grpo.yaml", schema=TrainConfig)
    assert bo.sync_policy.updates_per_generation == 4 and bo.algorithm.loss == "gspo"
    assert (bo.algorithm.prompts_per_step, bo.algorithm.eps_low, bo.algorithm.eps_high) == (256, 3e-4, 4e-4)
    asy = load_config(CONFIGS / "grpo_think_async.yaml", schema=TrainConfig)
    assert (asy.sync_policy.max_staleness, asy.sync_policy.tis_cap, asy.algorithm.loss) == (1, 2.0, "grpo")


def test_minibatches_hold_whole_prompt_groups_once_each():
    prompts = [p for p in (3, 0, 2, 1, 4) for _ in range(3)]  # 5 groups of 3 samples, not in order
    parts = minibatch_rows(prompts, 2, random.Random(0))
    assert sorted(len(p) for p in parts) == [6, 9]  # 2 and 3 groups
    assert sorted(r for p in parts for r in p) == list(range(15))
    for part in parts:
        groups = {prompts[r] for r in part}
        assert sorted(part) == sorted(r for r, g in enumerate(prompts) if g in groups)  # no group is split
    assert minibatch_rows(prompts, 2, random.Random(0)) == parts  # seeded: a resume repeats it
    assert any(minibatch_rows(prompts, 2, random.Random(s)) != parts for s in range(1, 5))
    with pytest.raises(ValueError, match="updates_per_generation=6 needs at least as many prompts"):
        minibatch_rows(prompts, 6, random.Random(0))


def test_select_keeps_rows_aligned_across_tensors():
    batch = sequences_to_batch([[1, 2], [3], [4, 5, 6]], [[7], [8, 9], [10]], pad_id=0,
                               advantages=[0.1, 0.2, 0.3], rollout_logprobs=[[-1.0], [-2.0, -3.0], [-4.0]])
    batch.old_logprobs = torch.arange(float(batch.loss_mask.numel())).view_as(batch.loss_mask)
    part = batch.select([2, 0])
    assert part.input_ids.tolist() == [batch.input_ids[2].tolist(), batch.input_ids[0].tolist()]
    assert part.advantages.tolist() == pytest.approx([0.3, 0.1])
    assert torch.equal(part.old_logprobs[1], batch.old_logprobs[0]) and part.ref_logprobs is None
    assert torch.equal(part.rollout_logprobs[0], batch.rollout_logprobs[2])


def test_update_metrics_are_averaged_over_the_updates_of_a_batch():
    got = mean_update_metrics([{"actor/pg_loss": 1.0, "actor/ratio_mean": 1.0},
                               {"actor/pg_loss": 3.0, "actor/ratio_mean": 1.5}])
    assert got == {"actor/pg_loss": 2.0, "actor/ratio_mean": 1.25, "actor/num_updates": 2.0}


def test_pending_async_batch_round_trips_exactly(tmp_path):
    gens = [Generation(prompt_index=1, prompt_ids=[5, 6], response_ids=[7, 8], text="x", finish_reason="stop",
                       rollout_logprobs=[-0.1234567890123, -2.5e-9])]
    ckpt.save_pending_rollout(tmp_path, {"step": 3, "prompt_indices": [4, 9], "epoch": 1, "weights_version": 1,
                                         "gen_seconds": 0.5, "generations": gens})
    back = ckpt.load_pending_rollout(tmp_path)
    assert back["generations"] == gens and back["prompt_indices"] == [4, 9] and back["step"] == 3
    assert ckpt.load_pending_rollout(tmp_path / "none") is None


class _Engine:
    """Stands in for the rollout pool: records which weights each batch was generated from."""

    def __init__(self):
        self.weights = 0
        self.generated: list[tuple[int, list[int], int]] = []

    def generate(self, step, idx):
        self.generated.append((step, list(idx), self.weights))
        return [Generation(i, [1], [2], "", "stop", [-0.5]) for i in idx], 0.01


def _drive(schedule, engine, steps, start=1):
    """The controller's order: batch -> (train: one update) -> wait -> load weights."""
    seen = []
    for step in range(start, steps + 1):
        batch = schedule.batch_for(step)
        gens, _ = batch.result()
        seen.append((step, batch.prompt_indices, step - 1 - batch.weights_version))  # staleness at the update
        schedule.wait_for_next()
        engine.weights = step
        schedule.weights_loaded(step)
        assert [g.prompt_index for g in gens] == batch.prompt_indices
    return seen


@pytest.mark.parametrize("staleness", [0, 1])
def test_schedule_generates_from_the_weights_its_staleness_allows(staleness):
    from aletheia_ray.rollout_schedule import RolloutSchedule
    from aletheia_ray.sampler import PromptSampler

    engine = _Engine()
    schedule = RolloutSchedule(engine.generate, PromptSampler(10, 2, seed=0), max_staleness=staleness, total_steps=4)
    seen = _drive(schedule, engine, 4)
    assert [s[2] for s in seen] == ([0, 0, 0, 0] if staleness == 0 else [0, 1, 1, 1])
    assert [g[2] for g in engine.generated] == ([0, 1, 2, 3] if staleness == 0 else [0, 0, 1, 2])
    assert [g[0] for g in engine.generated] == [1, 2, 3, 4]  # nothing generated past the last step
    assert schedule.pending() is None
    schedule.shutdown()


def test_schedule_resumed_from_a_checkpoint_repeats_the_uninterrupted_run():
    from aletheia_ray.rollout_schedule import RolloutSchedule
    from aletheia_ray.sampler import PromptSampler

    straight_engine = _Engine()
    straight = RolloutSchedule(straight_engine.generate, PromptSampler(10, 2, seed=0), max_staleness=1, total_steps=5)
    want = _drive(straight, straight_engine, 5)

    engine, sampler = _Engine(), PromptSampler(10, 2, seed=0)
    first = RolloutSchedule(engine.generate, sampler, max_staleness=1, total_steps=5)
    _drive(first, engine, 2)
    pending, sampler_state = first.pending(), sampler.state_dict()  # what a checkpoint at step 2 holds
    assert pending["step"] == 3 and pending["weights_version"] == 1
    first.shutdown()

    engine2, sampler2 = _Engine(), PromptSampler(10, 2, seed=0)
    sampler2.load_state_dict(sampler_state)
    engine2.weights = 2
    resumed = RolloutSchedule(engine2.generate, sampler2, max_staleness=1, total_steps=5)
    resumed.restore(pending, weights_version=2)
    assert _drive(resumed, engine2, 5, start=3) == want[2:]
    assert [g[0] for g in engine2.generated] == [4, 5]  # step 3's batch was not generated again


def test_an_on_policy_resume_regenerates_instead_of_training_on_a_stale_pending_batch():
    from aletheia_ray.rollout_schedule import RolloutSchedule
    from aletheia_ray.sampler import PromptSampler

    engine = _Engine()
    engine.weights = 2
    schedule = RolloutSchedule(engine.generate, PromptSampler(10, 2, seed=0), max_staleness=0, total_steps=4)
    schedule.restore({"step": 3, "prompt_indices": [0, 1], "epoch": 0, "weights_version": 1, "gen_seconds": 0.1,
                      "generations": []}, weights_version=2)
    seen = _drive(schedule, engine, 4, start=3)
    assert seen[0][1:] == ([0, 1], 0)  # the drawn prompts, generated from the loaded weights (staleness 0)
    assert [g[0] for g in engine.generated] == [3, 4] and engine.generated[0][1:] == ([0, 1], 2)
