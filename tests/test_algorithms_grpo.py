"""GRPO/DAPO, GSPO, TIS, SFT losses and logprob helpers against hand-computed values (no Ray)."""
import math

import pytest
import torch

from aletheia_ray.algorithms.losses import grpo_policy_loss, gspo_policy_loss, kl_k3, tis_weights
from aletheia_ray.algorithms.logprobs import entropy_from_logits, masked_mean, token_logprobs
from aletheia_ray.algorithms.registry import compute_loss
from aletheia_ray.algorithms.schedules import constant_with_warmup
from aletheia_ray.algorithms.losses import nll_loss
from aletheia_ray.batch import TrainBatch


def _one_token(ratio: float, advantage: float, **kw):
    logp = torch.tensor([[math.log(ratio)]], requires_grad=True)
    loss, metrics = grpo_policy_loss(logp, torch.zeros(1, 1), torch.tensor([advantage]),
                                     torch.ones(1, 1), beta=0.0, **kw)
    loss.backward()
    return loss.item(), logp.grad.item(), metrics


@pytest.mark.parametrize(
    "ratio, adv, loss, grad, clipped",
    [
        (1.27, 1.0, -1.27, -1.27, 0.0),  # just inside 1 + eps_high: gradient flows
        (1.29, 1.0, -1.28, 0.0, 1.0),  # just outside: clipped at 1.28, no gradient
        (1.25, 1.0, -1.25, -1.25, 0.0),  # clip-HIGHER: a symmetric 0.2 clip would stop this one
        (0.79, 1.0, -0.79, -0.79, 0.0),  # below 1 - eps_low with A > 0: pessimistic term is unclipped
        (0.81, -1.0, 0.81, 0.81, 0.0),  # just inside 1 - eps_low with A < 0: gradient flows
        (0.79, -1.0, 0.80, 0.0, 1.0),  # just outside: clipped at 0.8, no gradient
        (1.29, -1.0, 1.29, 1.29, 0.0),  # A < 0 has no upper clip
    ],
)
def test_clip_higher_edges(ratio, adv, loss, grad, clipped):
    got_loss, got_grad, metrics = _one_token(ratio, adv)
    assert got_loss == pytest.approx(loss, abs=1e-6)
    assert got_grad == pytest.approx(grad, abs=1e-6)
    assert metrics["pg_clipfrac"] == clipped
    assert metrics["ratio_mean"] == pytest.approx(ratio)


def test_symmetric_clip_when_configured():
    got_loss, got_grad, _ = _one_token(1.25, 1.0, eps_high=0.2)
    assert (got_loss, got_grad) == (pytest.approx(-1.2), 0.0)


def test_token_level_aggregation_with_unequal_lengths():
    # seq 0: 1 response token, A=+1 -> per-token loss -1; seq 1: 3 tokens, A=-1 -> +1 each.
    logp = torch.zeros(2, 4)
    mask = torch.tensor([[1.0, 0, 0, 0], [1, 1, 1, 0]])
    loss, metrics = grpo_policy_loss(logp, logp, torch.tensor([1.0, -1.0]), mask, beta=0.0)
    assert loss.item() == pytest.approx((-1 + 3) / 4)  # DAPO: sum over tokens / 4 tokens
    sequence_mean = (-1 + 1) / 2
    assert loss.item() != pytest.approx(sequence_mean)
    assert metrics["pg_loss"] == pytest.approx(0.5)


def test_global_num_tokens_makes_shards_add_up_to_the_full_batch():
    torch.manual_seed(0)
    logp = torch.randn(4, 6, requires_grad=True)
    old = logp.detach() + 0.1 * torch.randn(4, 6)
    ref = logp.detach() + 0.1 * torch.randn(4, 6)
    adv = torch.tensor([1.0, -0.5, 0.3, -2.0])
    mask = torch.tensor([[1.0] * 6, [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0]])
    full, full_m = grpo_policy_loss(logp, old, adv, mask, ref_logprobs=ref)
    (full_grad,) = torch.autograd.grad(full, logp)
    n = mask.sum().item()
    parts = [grpo_policy_loss(logp[s], old[s], adv[s], mask[s], ref_logprobs=ref[s], global_num_tokens=n)
             for s in (slice(0, 1), slice(1, 4))]
    total = parts[0][0] + parts[1][0]
    (shard_grad,) = torch.autograd.grad(total, logp)
    assert total.item() == pytest.approx(full.item(), abs=1e-6)
    assert torch.allclose(shard_grad, full_grad, atol=1e-7)
    for key in ("pg_loss", "pg_clipfrac", "kl", "ratio_mean"):
        assert parts[0][1][key] + parts[1][1][key] == pytest.approx(full_m[key], abs=1e-6)


def test_kl_k3_known_values():
    logp = torch.tensor([math.log(0.5), math.log(0.25), math.log(0.3)])
    ref = torch.tensor([math.log(0.25), math.log(0.5), math.log(0.3)])
    expected = [0.5 - math.log(0.5) - 1, 2 - math.log(2) - 1, 0.0]  # 0.193147, 0.306853, 0
    assert kl_k3(logp, ref).tolist() == pytest.approx(expected, abs=1e-6)


def test_kl_term_enters_loss_with_beta():
    logp = torch.tensor([[math.log(0.5), math.log(0.25)]])
    ref = torch.tensor([[math.log(0.25), math.log(0.5)]])
    mask = torch.ones(1, 2)
    loss, m = grpo_policy_loss(logp, logp, torch.tensor([0.0]), mask, ref_logprobs=ref, beta=1e-3)
    kl_mean = (0.5 - math.log(0.5) - 1 + 2 - math.log(2) - 1) / 2
    assert m["kl"] == pytest.approx(kl_mean, abs=1e-6)
    assert loss.item() == pytest.approx(1e-3 * kl_mean, abs=1e-9)
    with pytest.raises(ValueError, match="needs ref_logprobs"):
        grpo_policy_loss(logp, logp, torch.tensor([0.0]), mask, beta=1e-3)


def test_tis_weights_are_truncated_and_multiply_the_pg_term():
    old = torch.tensor([[math.log(3.0), math.log(0.5)]])
    w = tis_weights(old, torch.zeros(1, 2), cap=2.0)
    assert w.tolist() == [[pytest.approx(2.0), pytest.approx(0.5)]]
    logp = torch.zeros(1, 2)
    loss, m = grpo_policy_loss(logp, logp, torch.tensor([1.0]), torch.ones(1, 2), beta=0.0, token_weights=w)
    assert loss.item() == pytest.approx(-(2.0 + 0.5) / 2)
    assert m["tis_weight_mean"] == pytest.approx(1.25)


def test_tis_weights_also_weight_the_k3_kl_of_off_policy_samples():
    # rollout-sampled tokens: the trained policy now gives the 2nd token 1/e^6 of the reference's
    # probability; unweighted k3 = e^6 - 6 - 1 ~ 396 dominates, weighted by w = e^-6 it is ~1
    logp = torch.tensor([[0.0, -6.0]])
    ref = torch.tensor([[math.log(0.5), 0.0]])
    w = tis_weights(logp, torch.tensor([[math.log(0.25), 0.0]]), cap=2.0)  # [2 (capped from 4), e^-6]
    k3 = [0.5 - math.log(0.5) - 1, math.exp(6) - 6 - 1]
    loss, m = grpo_policy_loss(logp, logp, torch.tensor([0.0]), torch.ones(1, 2), ref_logprobs=ref,
                               beta=0.1, token_weights=w)
    weighted = (2.0 * k3[0] + math.exp(-6) * k3[1]) / 2
    assert m["kl"] == pytest.approx(weighted, rel=1e-5)
    assert loss.item() == pytest.approx(0.1 * weighted, rel=1e-5)
    _, unweighted = grpo_policy_loss(logp, logp, torch.tensor([0.0]), torch.ones(1, 2), ref_logprobs=ref, beta=0.1)
    assert unweighted["kl"] == pytest.approx(sum(k3) / 2, rel=1e-5) and unweighted["kl"] > 100 * m["kl"]


def test_gspo_sequence_ratio_clipping_and_gradient():
    logp = torch.tensor([[0.1, 0.3, 0.0]], requires_grad=True)  # old = 0, 2 response tokens
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    s = math.exp(0.2)  # exp(mean log-ratio)
    loss, m = gspo_policy_loss(logp, torch.zeros(1, 3), torch.tensor([1.0]), mask)
    loss.backward()
    assert loss.item() == pytest.approx(-(1 + 4e-4))  # clipped at 1 + eps_high
    assert logp.grad.abs().sum().item() == 0.0 and m["pg_clipfrac"] == 1.0
    logp.grad = None
    loss, m = gspo_policy_loss(logp, torch.zeros(1, 3), torch.tensor([1.0]), mask, eps_high=0.5)
    loss.backward()
    assert loss.item() == pytest.approx(-s) and m["ratio_mean"] == pytest.approx(s)
    assert logp.grad.tolist() == [[pytest.approx(-s / 2), pytest.approx(-s / 2), 0.0]]


def test_nll_loss_token_mean():
    logp = torch.tensor([[-1.0, -2.0], [-3.0, -100.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    loss, m = nll_loss(logp, mask)
    assert loss.item() == pytest.approx(2.0) and m["nll"] == pytest.approx(2.0)
    assert nll_loss(logp, mask, global_num_tokens=6)[0].item() == pytest.approx(1.0)


def _batch(**kw):
    base = dict(input_ids=torch.zeros(2, 3, dtype=torch.long), attention_mask=torch.ones(2, 3),
                loss_mask=torch.ones(2, 2), advantages=torch.tensor([1.0, -1.0]))
    base.update(kw)
    return TrainBatch(**base)


def test_registry_names_unknown_loss_and_kwargs():
    logp = torch.zeros(2, 2)
    with pytest.raises(KeyError, match="unknown loss 'ppo'"):
        compute_loss("ppo", logp, _batch(), global_num_tokens=4, global_num_sequences=2)
    with pytest.raises(KeyError, match="unknown loss_kwargs \\['eps'\\] for loss 'grpo'"):
        compute_loss("grpo", logp, _batch(), global_num_tokens=4, global_num_sequences=2, eps=0.1)
    with pytest.raises(ValueError, match="no rollout_logprobs"):
        compute_loss("grpo", logp, _batch(), global_num_tokens=4, global_num_sequences=2, tis_cap=2.0)


def test_registry_grpo_without_old_logprobs_is_on_policy_ratio_one():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -0.1]], requires_grad=True)
    loss, m = compute_loss("grpo", logp, _batch(), global_num_tokens=4, global_num_sequences=2, beta=0.0)
    assert m["ratio_mean"] == pytest.approx(1.0) and loss.item() == pytest.approx(0.0)
    loss.backward()
    assert logp.grad.tolist() == [[-0.25, -0.25], [0.25, 0.25]]  # -A / N per token


def test_token_logprobs_match_log_softmax_with_temperature():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    labels = torch.randint(0, 11, (2, 5))
    ref = torch.log_softmax(logits / 0.7, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(token_logprobs(logits, labels, temperature=0.7), ref, atol=1e-6)
    assert entropy_from_logits(torch.zeros(1, 1, 8)).item() == pytest.approx(math.log(8))
    assert masked_mean(torch.tensor([1.0, 3.0, 9.0]), torch.tensor([1.0, 1.0, 0.0])).item() == 2.0


def test_constant_with_warmup_multipliers():
    f = constant_with_warmup(4)
    assert [f(k) for k in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert constant_with_warmup(0)(0) == 1.0
