"""The DPO sigmoid loss against hand-computed values in TRL's convention (DPOTrainer,
loss_type="sigmoid": -log sigmoid(beta * ((pi_c - pi_r) - (ref_c - ref_r))), mean over pairs;
rewards/* metrics as TRL names them). No Ray, no TRL dependency."""
from __future__ import annotations

import math

import pytest
import torch

from aletheia_ray.algorithms.losses import dpo_sigmoid_loss


def softplus(x: float) -> float:  # -log sigmoid(-x)
    return math.log1p(math.exp(x))


def test_dpo_sigmoid_loss_matches_trl_convention_within_1e_6():
    chosen = torch.tensor([-10.0, -5.0], requires_grad=True)
    rejected = torch.tensor([-12.0, -4.0], requires_grad=True)
    ref_chosen, ref_rejected = torch.tensor([-11.0, -5.0]), torch.tensor([-11.0, -6.0])
    loss, m = dpo_sigmoid_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.1)
    # logits = (pi_c - pi_r) - (ref_c - ref_r): pair 0: 2 - 0 = 2; pair 1: -1 - 1 = -2
    expected = (softplus(-0.1 * 2) + softplus(0.1 * 2)) / 2  # -log sigmoid(z) = softplus(-z)
    assert loss.item() == pytest.approx(expected, abs=1e-6) and expected == pytest.approx(0.6981388693, abs=1e-9)
    assert m["rewards/chosen"] == pytest.approx((0.1 * 1 + 0.1 * 0) / 2, abs=1e-6)
    assert m["rewards/rejected"] == pytest.approx((0.1 * -1 + 0.1 * 2) / 2, abs=1e-6)
    assert m["rewards/margins"] == pytest.approx(0.0, abs=1e-6) and m["rewards/accuracies"] == 0.5
    loss.backward()
    sig = 1 / (1 + math.exp(-0.2))  # d/dz softplus(-z) = -(1 - sigmoid(z)); z = 0.2, then -0.2
    grads = [-(1 - sig) * 0.1 / 2, -(1 - (1 - sig)) * 0.1 / 2]
    assert chosen.grad.tolist() == [pytest.approx(g, abs=1e-7) for g in grads]
    assert rejected.grad.tolist() == [pytest.approx(-g, abs=1e-7) for g in grads]


def test_dpo_global_pair_count_makes_ranks_add_up_and_bad_shapes_are_named():
    args = (torch.tensor([-1.0, -2.0, -3.0]), torch.tensor([-2.0, -2.0, -1.0]), torch.zeros(3), torch.zeros(3))
    whole, _ = dpo_sigmoid_loss(*args, beta=0.5)
    parts = [dpo_sigmoid_loss(*(a[s] for a in args), beta=0.5, global_num_pairs=3)[0]
             for s in (slice(0, 1), slice(1, 3))]
    assert sum(p.item() for p in parts) == pytest.approx(whole.item(), abs=1e-7)
    with pytest.raises(ValueError, match="one sequence logprob per pair"):
        dpo_sigmoid_loss(torch.zeros(2), torch.zeros(3), torch.zeros(2), torch.zeros(2))
