"""Token-budget micro-batches: rows grouped by length, each micro-batch trimmed to its longest row,
and the loss normalised by the global token count stays exact (loss and gradients summed over
micro-batches equal the whole batch's)."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aletheia_ray.algorithms.logprobs import scored_logprobs
from aletheia_ray.algorithms.registry import compute_loss
from aletheia_ray.memory_options import enable_gradient_checkpointing
from aletheia_ray.micro_batches import micro_batches, plan_micro_batches
from aletheia_ray.models import build_tiny_model
from test_learner_group import GRPO_KWARGS, hf_model, make_batch


@given(st.lists(st.integers(1, 50), min_size=1, max_size=40), st.integers(1, 8), st.integers(50, 300))
@settings(max_examples=200, deadline=None)
def test_token_budget_plan_covers_every_row_once_within_budget(lengths, max_rows, max_tokens):
    plan = plan_micro_batches(lengths, max_rows, max_tokens)
    assert sorted(r for mb in plan for r in mb) == list(range(len(lengths)))
    for mb in plan:
        assert len(mb) <= max_rows
        assert len(mb) * max(lengths[r] for r in mb) <= max_tokens
        assert lengths[mb[0]] == max(lengths[r] for r in mb)  # first row is the longest


def test_plan_groups_by_length_and_pays_less_padding_than_row_chunks():
    lengths = [100, 10, 95, 12, 98, 11, 9, 97]
    by_rows = plan_micro_batches(lengths, 4)
    assert by_rows == [[0, 1, 2, 3], [4, 5, 6, 7]]  # no budget: consecutive rows, as before
    by_tokens = plan_micro_batches(lengths, 8, 400)
    assert by_tokens == [[0, 4, 7, 2], [3, 5, 1, 6]]
    padded = sum(len(mb) * max(lengths[r] for r in mb) for mb in by_tokens)
    assert padded == 4 * 100 + 4 * 12 < 8 * 100  # batch-wide padding would be 800 tokens
    assert plan_micro_batches([500, 20], 4, 100) == [[0], [1]]  # a row over budget goes alone
    with pytest.raises(ValueError, match="max_tokens_per_micro_batch"):
        plan_micro_batches([5], 1, 0)


def test_micro_batches_are_trimmed_exactly():
    batch = make_batch(100)
    parts = list(micro_batches(batch, 2, 24))
    assert [rows for rows, _ in parts] == [[2, 0], [1, 3], [4]]
    for rows, mb in parts:
        length = max(batch.row_lengths()[r] for r in rows)
        assert mb.input_ids.shape == (len(rows), length) and mb.loss_mask.shape == (len(rows), length - 1)
        assert torch.equal(mb.input_ids, batch.input_ids[rows, :length])
        assert torch.equal(mb.loss_mask, batch.loss_mask[rows, : length - 1])
        assert torch.equal(mb.advantages, batch.advantages[rows])


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return hf_model(build_tiny_model(str(tmp_path_factory.mktemp("tiny") / "m"), seed=0))


def _loss_and_grads(model, batch, max_rows, max_tokens):
    n_tok, n_seq = float(batch.loss_mask.sum()), float((batch.loss_mask.sum(-1) > 0).sum())
    total = 0.0
    for _, mb in micro_batches(batch, max_rows, max_tokens):
        logprobs, _ = scored_logprobs(model, mb.input_ids, mb.attention_mask, mb.loss_mask)
        loss, _ = compute_loss("grpo", logprobs, mb, global_num_tokens=n_tok, global_num_sequences=n_seq, **GRPO_KWARGS)
        loss.backward()
        total += float(loss)
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    return total, grads


@pytest.mark.parametrize("max_rows,max_tokens", [(1, None), (2, 24), (5, 13)])
def test_loss_and_gradients_over_token_budget_micro_batches_equal_the_whole_batch(model, max_rows, max_tokens):
    batch = make_batch(model.config.vocab_size, seed=1)
    batch.old_logprobs = torch.zeros(batch.loss_mask.shape) - 4.0
    batch.ref_logprobs = torch.zeros(batch.loss_mask.shape) - 3.9
    whole, whole_grads = _loss_and_grads(model, batch, 5, None)
    split, split_grads = _loss_and_grads(model, batch, max_rows, max_tokens)
    assert split == pytest.approx(whole, abs=1e-6)
    assert_same_gradients(split_grads, whole_grads)


def test_gradient_checkpointing_recomputes_layers_with_equal_gradients_and_dropout_off(tmp_path):
    model_dir = build_tiny_model(str(tmp_path / "m"), seed=0)
    plain, ckpt = hf_model(model_dir), hf_model(model_dir)
    assert enable_gradient_checkpointing(ckpt) == ckpt.config.num_hidden_layers
    assert not any(m.training for m in ckpt.modules() if isinstance(m, torch.nn.Dropout))
    assert not ckpt.training and not ckpt.model.layers[0].self_attn.training  # only the layers' own flag
    calls = []
    for layer in ckpt.model.layers:  # a pre-hook: the recomputation stops early once it has what it needs
        layer.self_attn.register_forward_pre_hook(lambda *a: calls.append(1))
    batch = make_batch(plain.config.vocab_size, seed=2)
    batch.old_logprobs = batch.ref_logprobs = torch.zeros(batch.loss_mask.shape) - 4.0
    loss_plain, grads_plain = _loss_and_grads(plain, batch, 5, None)
    loss_ckpt, grads_ckpt = _loss_and_grads(ckpt, batch, 5, None)
    assert len(calls) == 2 * ckpt.config.num_hidden_layers  # forward + recompute in the backward
    assert loss_ckpt == pytest.approx(loss_plain, abs=1e-7)
    assert_same_gradients(grads_ckpt, grads_plain)


def assert_same_gradients(got: dict, want: dict, rel: float = 1e-5) -> None:
    """Per parameter: ||got - want|| <= rel * ||want|| (summation order differs between paths, so
    single tiny entries may differ in their last bits; the gradient as a vector may not)."""
    assert got.keys() == want.keys()
    for name, grad in want.items():
        assert (got[name] - grad).norm() <= rel * grad.norm() + 1e-12, name


def test_near_equal_bounds_cover_every_item_once_with_sizes_within_one():
    from aletheia_ray.micro_batches import near_equal_bounds

    assert near_equal_bounds(10, 4) == [(0, 3), (3, 6), (6, 8), (8, 10)]
    assert near_equal_bounds(1, 3) == [(0, 1), (1, 1), (1, 1)]  # more parts than items: empty parts last
    for n in range(0, 30):
        for k in range(1, 7):
            bounds = near_equal_bounds(n, k)
            sizes = [e - s for s, e in bounds]
            assert len(bounds) == k and bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:])) and max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match="cannot split into 0 parts"):
        near_equal_bounds(3, 0)
