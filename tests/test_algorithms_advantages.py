"""Group-relative advantages against hand-computed values (no Ray)."""
import math

import pytest
import torch

from aletheia_ray.algorithms.advantages import group_relative_advantages


def test_group_std_normalisation_hand_values():
    # group 0: [1, 0, 0, 1] -> mean 0.5, unbiased std sqrt(1/3); group 1: [2, 0] -> mean 1, std sqrt(2)
    out = group_relative_advantages([1, 0, 0, 1, 2, 0], [0, 0, 0, 0, 1, 1], eps=0.0)
    a = 0.5 / math.sqrt(1 / 3)
    b = 1 / math.sqrt(2)
    assert out.advantages.tolist() == pytest.approx([a, -a, -a, a, b, -b], abs=1e-6)
    assert out.frac_reward_zero_std == 0.0
    assert out.num_groups == 2


def test_eps_and_biased_std_are_configurable():
    out = group_relative_advantages([0.0, 1.0], [7, 7], eps=1.0)
    assert out.advantages.tolist() == pytest.approx([-0.5 / (math.sqrt(0.5) + 1), 0.5 / (math.sqrt(0.5) + 1)])
    biased = group_relative_advantages([0.0, 1.0], [7, 7], eps=0.0, unbiased_std=False)
    assert biased.advantages.tolist() == pytest.approx([-1.0, 1.0])  # population std 0.5
    raw = group_relative_advantages([0.0, 1.0], [7, 7], normalize_by_std=False)
    assert raw.advantages.tolist() == pytest.approx([-0.5, 0.5])


def test_zero_std_groups_get_zero_advantage_and_are_counted():
    rewards = [1, 1, 1, -1, -1, -1, 0, 1, 5]
    groups = [0, 0, 0, 1, 1, 1, 2, 2, 3]  # groups 0 and 1 all-equal, group 3 has one sample
    out = group_relative_advantages(rewards, groups)
    assert out.advantages[:6].tolist() == [0.0] * 6
    assert out.advantages[8].item() == 0.0
    assert out.advantages[6].item() < 0 < out.advantages[7].item()
    assert out.frac_reward_zero_std == pytest.approx(3 / 4)
    assert out.metrics()["frac_reward_zero_std"] == pytest.approx(0.75)


def test_interleaved_group_ids_and_tensor_inputs():
    out = group_relative_advantages(torch.tensor([1.0, 3.0, 0.0, 3.0]), torch.tensor([0, 1, 0, 1]), eps=0.0)
    s = 1 / math.sqrt(0.5)
    assert out.advantages.tolist() == pytest.approx([s * 0.5, 0.0, -s * 0.5, 0.0])
    assert out.frac_reward_zero_std == 0.5


@pytest.mark.parametrize("bad", [None, float("nan"), float("inf")])
def test_missing_or_nan_reward_raises_naming_the_sample(bad):
    with pytest.raises(ValueError, match="sample 2 \\(group 1\\)"):
        group_relative_advantages([0.0, 1.0, bad], [0, 0, 1])


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="3 rewards but 2 group ids"):
        group_relative_advantages([0, 1, 2], [0, 0])
