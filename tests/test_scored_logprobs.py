"""Logprobs without the full logits (issue: real models): ``scored_logprobs`` equals the plain
full-logits path within 1e-6 in fp32 — values, entropy and gradients — while the output head never
sees more than ``chunk_tokens`` positions at once and the model returns one position of logits.
Also the device check it runs on its labels/masks, and the no-gradient batch pass."""
import pytest
import torch

from aletheia_ray.algorithms.logprobs import causal_lm_logprobs, scored_logprobs
from aletheia_ray.causal_lm import batch_logprobs
from aletheia_ray.device import add_forward_device_check, check_on_device
from aletheia_ray.models import build_tiny_model
from simulated_host_device import on_host
from test_learner_group import hf_model, make_batch
from test_micro_batches import assert_same_gradients


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return hf_model(build_tiny_model(str(tmp_path_factory.mktemp("tiny") / "m"), seed=0))


def _grads(model):
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    return grads


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("chunk_tokens", [1, 5, 4096])
def test_values_entropy_and_gradients_equal_the_full_logits_path(model, temperature, chunk_tokens):
    batch = make_batch(model.config.vocab_size, seed=3)
    mask = batch.loss_mask.bool()
    weights = torch.randn(batch.loss_mask.shape, generator=torch.Generator().manual_seed(0)) * batch.loss_mask

    plain, plain_entropy = causal_lm_logprobs(model, batch.input_ids, batch.attention_mask, temperature, True)
    (plain * weights).sum().backward()
    plain_grads = _grads(model)
    got, entropy = scored_logprobs(model, batch.input_ids, batch.attention_mask, batch.loss_mask,
                                   temperature=temperature, with_entropy=True, chunk_tokens=chunk_tokens)
    (got * weights).sum().backward()
    got_grads = _grads(model)

    assert (got[mask] - plain[mask]).abs().max().item() < 1e-6
    assert torch.equal(got[~mask], torch.zeros_like(got[~mask]))  # only the scored positions
    assert torch.allclose(entropy[mask], plain_entropy[mask], rtol=1e-6, atol=5e-6)
    assert not entropy.requires_grad
    assert_same_gradients(got_grads, plain_grads)


def test_output_head_sees_at_most_chunk_tokens_and_model_logits_are_one_position(model):
    batch = make_batch(model.config.vocab_size, seed=4)
    head_rows, logits_shapes = [], []
    h1 = model.lm_head.register_forward_hook(lambda m, args, out: head_rows.append(args[0].shape[:-1].numel()))
    h2 = model.register_forward_hook(lambda m, args, out: logits_shapes.append(tuple(out.logits.shape)))
    try:
        logprobs, _ = scored_logprobs(model, batch.input_ids, batch.attention_mask, batch.loss_mask, chunk_tokens=7)
        logprobs.sum().backward()  # the backward recomputes each chunk: still <= 7 positions
    finally:
        h1.remove()
        h2.remove()
        model.zero_grad()
    num_scored = int(batch.loss_mask.sum())
    B = batch.input_ids.shape[0]
    assert logits_shapes == [(B, 1, model.config.vocab_size)]  # logits_to_keep=1: no [B, T, V]
    per_pass = head_rows[1:1 + -(-num_scored // 7)]  # after the model's own 1-position head call
    assert max(head_rows[1:]) <= 7 and sum(per_pass) == num_scored
    assert len(head_rows) == 1 + 2 * -(-num_scored // 7)  # forward chunks + their recomputation


def test_without_gradients_no_tuple_of_layer_hidden_states_is_kept(model):
    """The no-gradient passes (old logprobs, reference) still call the model itself (ZeRO-3's
    bookkeeping runs in its forward) for one position of logits, and take the decoder's last
    hidden state with a hook: no tuple of every layer's hidden states exists."""
    batch = make_batch(model.config.vocab_size, seed=4)
    outputs, head_rows = [], []
    h1 = model.register_forward_hook(lambda m, args, out: outputs.append(out))
    h2 = model.lm_head.register_forward_hook(lambda m, args, out: head_rows.append(args[0].shape[:-1].numel()))
    try:
        with torch.no_grad():
            got, _ = scored_logprobs(model, batch.input_ids, batch.attention_mask, batch.loss_mask, chunk_tokens=7)
    finally:
        h1.remove()
        h2.remove()
    with torch.no_grad():
        plain, _ = causal_lm_logprobs(model, batch.input_ids, batch.attention_mask)
    mask = batch.loss_mask.bool()
    assert len(outputs) == 1 and outputs[0].hidden_states is None
    assert outputs[0].logits.shape == (batch.input_ids.shape[0], 1, model.config.vocab_size)
    assert head_rows[0] == batch.input_ids.shape[0] and max(head_rows[1:]) <= 7
    assert sum(head_rows[1:]) == int(batch.loss_mask.sum())
    assert (got[mask] - plain[mask]).abs().max().item() < 1e-6


@pytest.mark.parametrize("num_chunks", [4, 9, 40])
def test_a_fixed_number_of_head_calls_gives_the_same_values_and_gradients(model, num_chunks):
    """ZeRO-3 makes every rank call the head equally often: more calls than needed (empty pieces run
    a stand-in row times 0) change neither values nor gradients, and run that many calls forward and
    again in the backward."""
    batch = make_batch(model.config.vocab_size, seed=6)
    n = int(batch.loss_mask.sum())
    free, _ = scored_logprobs(model, batch.input_ids, batch.attention_mask, batch.loss_mask, chunk_tokens=7)
    free.sum().backward()
    free_grads = _grads(model)
    calls = []
    handle = model.lm_head.register_forward_hook(lambda *a: calls.append(1))
    try:
        fixed, _ = scored_logprobs(model, batch.input_ids, batch.attention_mask, batch.loss_mask, chunk_tokens=7,
                                   num_chunks=num_chunks)
        fixed.sum().backward()
    finally:
        handle.remove()
    fixed_grads = _grads(model)
    assert len(calls) == 1 + 2 * num_chunks  # the model's 1-position head call, chunks, recomputed chunks
    assert (fixed - free).abs().max().item() < 1e-6
    assert_same_gradients(fixed_grads, free_grads)
    with pytest.raises(ValueError, match="fewer than the"):
        scored_logprobs(model, batch.input_ids, batch.attention_mask, batch.loss_mask, chunk_tokens=7,
                        num_chunks=-(-n // 7) - 1)


def test_batch_pass_scores_all_or_response_positions_in_token_budget_micro_batches(model):
    batch = make_batch(model.config.vocab_size, seed=5)
    with torch.no_grad():
        plain, _ = causal_lm_logprobs(model, batch.input_ids, batch.attention_mask)
    real, response = batch.attention_mask[:, 1:].bool(), batch.loss_mask.bool()
    for max_rows, max_tokens in ((2, None), (4, 24), (1, 13)):
        everything = batch_logprobs(model, batch, micro_batch_size=max_rows, max_tokens=max_tokens, chunk_tokens=4)
        only_response = batch_logprobs(model, batch, micro_batch_size=max_rows, max_tokens=max_tokens,
                                       scored="response", chunk_tokens=4)
        assert everything.shape == plain.shape and not everything.requires_grad
        assert (everything[real] - plain[real]).abs().max().item() < 1e-6
        assert (only_response[response] - plain[response]).abs().max().item() < 1e-6
        assert only_response[~response].abs().max().item() == 0.0


def test_models_that_transform_logits_after_the_head_are_refused(model):
    batch = make_batch(model.config.vocab_size)
    model.config.final_logit_softcapping = 30.0
    try:
        with pytest.raises(NotImplementedError, match="final_logit_softcapping"):
            scored_logprobs(model, batch.input_ids, batch.attention_mask)
    finally:
        model.config.final_logit_softcapping = None


def test_device_checks_name_the_tensor_left_on_the_host(model):
    batch = make_batch(model.config.vocab_size)
    host = on_host(batch)
    with pytest.raises(RuntimeError, match=r"scored_mask on meta"):
        check_on_device("scored_logprobs", torch.device("cpu"), scored_mask=host.loss_mask, labels=batch.input_ids)
    handle = add_forward_device_check(model)
    try:
        with pytest.raises(RuntimeError, match=r"Qwen2ForCausalLM.forward: tensors not on the model's device cpu: "
                                               r"input_ids on meta, attention_mask on meta"):
            model(input_ids=host.input_ids, attention_mask=host.attention_mask)
        with pytest.raises(RuntimeError, match=r"scored_logprobs: tensors not on the model's device cpu: "
                                               r"input_ids on meta, attention_mask on meta, scored_mask on meta"):
            scored_logprobs(model, host.input_ids, host.attention_mask, host.loss_mask)
        with torch.no_grad(), pytest.raises(RuntimeError, match="scored_logprobs: .*: scored_mask on meta"):
            scored_logprobs(model, batch.input_ids, batch.attention_mask, host.loss_mask)
        moved = host.to(torch.device("cpu"))  # the one move makes every path work
        got = batch_logprobs(model, host, micro_batch_size=2, max_tokens=24)  # moves each micro-batch itself
        want, _ = scored_logprobs(model, moved.input_ids, moved.attention_mask)
        assert (got - want.detach()).abs().max().item() < 1e-6
    finally:
        handle.remove()
