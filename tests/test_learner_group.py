"""LearnerGroup: real Ray actors + DeepSpeed ZeRO-2 over gloo on CPU, with the tiny Qwen2.

Run under the heavy lock: ``flock /tmp/aletheia-heavy.lock timeout 900 pytest tests/test_learner_group.py``.
"""
import os
import tempfile

import pytest
import torch

ray = pytest.importorskip("ray")

from aletheia_ray.actors.learner import LearnerGroup  # noqa: E402
from aletheia_ray.algorithms.logprobs import causal_lm_logprobs  # noqa: E402
from aletheia_ray.algorithms.registry import compute_loss  # noqa: E402
from aletheia_ray.batch import TrainBatch  # noqa: E402
from aletheia_ray.models import build_tiny_model  # noqa: E402

pytestmark = pytest.mark.slow  # ~45-60 s on a loaded 2-core machine (Ray + 4 DeepSpeed ranks)

LR = 1e-3
GRPO_KWARGS = {"beta": 1e-3, "eps_low": 0.2, "eps_high": 0.28}


def make_batch(vocab_size: int, seed: int = 0) -> TrainBatch:
    """5 rows with unequal prompt/response lengths, right-padded (odd size: uneven rank shards)."""
    g = torch.Generator().manual_seed(seed)
    lengths = [(4, 6), (7, 2), (3, 9), (5, 4), (6, 1)]  # (prompt, response)
    T = max(p + r for p, r in lengths) + 1
    ids = torch.zeros(len(lengths), T, dtype=torch.long)
    attn = torch.zeros(len(lengths), T, dtype=torch.long)
    loss_mask = torch.zeros(len(lengths), T - 1)
    for b, (p, r) in enumerate(lengths):
        ids[b, : p + r] = torch.randint(10, vocab_size, (p + r,), generator=g)
        attn[b, : p + r] = 1
        loss_mask[b, p - 1 : p + r - 1] = 1.0  # positions predicting the response tokens
    advantages = torch.tensor([1.2, -0.7, 0.4, -1.1, 0.9])
    return TrainBatch(input_ids=ids, attention_mask=attn, loss_mask=loss_mask, advantages=advantages)


@pytest.fixture(scope="module")
def env():
    root = tempfile.mkdtemp(prefix="/tmp/alt_learner_")
    model_dir = build_tiny_model(os.path.join(root, "model"), seed=0)
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=os.path.join(root, "ray"),
             runtime_env={"env_vars": {"DS_ACCELERATOR": "cpu"}})
    kwargs = dict(lr=LR, micro_batch_size=2, grad_clip=100.0, seed=0)
    two = LearnerGroup(2, model_dir, num_cpus_per_rank=0.5, **kwargs)
    one = LearnerGroup(1, model_dir, num_cpus_per_rank=0.5, **kwargs)
    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(model_dir).vocab_size
    yield {"root": root, "model_dir": model_dir, "two": two, "one": one, "vocab": vocab}
    two.shutdown()
    one.shutdown()
    ray.shutdown()


def hf_model(model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa").eval()


def valid_positions(batch):
    return batch.attention_mask[:, 1:].bool()


def test_group_logprobs_equal_plain_hf_forward(env):
    model = hf_model(env["model_dir"])
    batch = make_batch(model.config.vocab_size)
    with torch.no_grad():
        expected, _ = causal_lm_logprobs(model, batch.input_ids, batch.attention_mask)
    got = env["two"].compute_logprobs(batch)
    assert got.shape == (5, batch.input_ids.shape[1] - 1)
    mask = valid_positions(batch)
    assert (got[mask] - expected[mask]).abs().max().item() < 1e-5


def test_grpo_step_two_ranks_equals_one_rank_and_lowers_loss(env):
    model = hf_model(env["model_dir"])
    batch = make_batch(model.config.vocab_size)
    old = env["two"].compute_logprobs(batch)
    batch.old_logprobs = old
    batch.ref_logprobs = old - 0.05 * torch.randn(old.shape, generator=torch.Generator().manual_seed(1))

    # Plain-torch reference: the whole batch's DAPO loss and its gradient norm in one process.
    logp, _ = causal_lm_logprobs(model, batch.input_ids, batch.attention_mask)
    n_tok = batch.loss_mask.sum().item()
    loss0, _ = compute_loss("grpo", logp, batch, global_num_tokens=n_tok, global_num_sequences=5, **GRPO_KWARGS)
    loss0.backward()
    torch_grad_norm = torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters())).item()

    before = ray.get(env["two"].get_weights_ref())
    m2 = env["two"].train_step(batch, "grpo", GRPO_KWARGS)
    m1 = env["one"].train_step(batch, "grpo", GRPO_KWARGS)
    for m in (m1, m2):
        assert m["actor/loss"] == pytest.approx(loss0.item(), abs=1e-6)
        assert m["actor/grad_norm"] == pytest.approx(torch_grad_norm, rel=1e-4)
        assert m["actor/lr"] == pytest.approx(LR)
        assert m["actor/num_tokens"] == n_tok
    for key in ("actor/pg_loss", "actor/kl", "actor/pg_clipfrac", "actor/ratio_mean", "actor/entropy"):
        assert m2[key] == pytest.approx(m1[key], abs=1e-6)
    assert m2["actor/ratio_mean"] == pytest.approx(1.0, abs=1e-5)

    after2 = ray.get(env["two"].get_weights_ref())
    after1 = ray.get(env["one"].get_weights_ref())
    changed = max((after2[k] - before[k]).abs().max().item() for k in before)
    assert changed > 0.5 * LR  # Adam's first step moves weights by ~lr
    diff = max((after2[k] - after1[k]).abs().max().item() for k in after1)
    assert diff < 1e-5, f"2-rank and 1-rank weights differ by {diff}"
    assert "lm_head.weight" in after2  # tied embeddings are still sent in full

    new_logp = env["two"].compute_logprobs(batch)
    loss1, _ = compute_loss("grpo", new_logp, batch, global_num_tokens=n_tok, global_num_sequences=5, **GRPO_KWARGS)
    assert loss1.item() < loss0.item() - 1e-3


def test_checkpoint_roundtrip_reproduces_next_step_exactly(env):
    group = env["two"]
    batch = make_batch(env["vocab"], seed=3)
    batch.advantages = torch.tensor([0.5, -0.5, 1.0, -1.0, 0.2])
    ckpt = os.path.join(env["root"], "ckpt")
    group.save_checkpoint(ckpt, {"step": 7, "sampler": [1, 2, 3]})
    first = group.train_step(batch, "grpo", {"beta": 0.0})
    weights_first = ray.get(group.get_weights_ref())
    assert group.load_checkpoint(ckpt)["step"] == 7
    again = group.train_step(batch, "grpo", {"beta": 0.0})
    assert again["actor/loss"] == first["actor/loss"]
    assert again["actor/grad_norm"] == first["actor/grad_norm"]
    weights_again = ray.get(group.get_weights_ref())
    assert all(torch.equal(weights_first[k], weights_again[k]) for k in weights_first)
    with pytest.raises(Exception, match="no DeepSpeed checkpoint"):
        group.load_checkpoint(os.path.join(env["root"], "nothing_here"))


def test_save_hf_loads_with_transformers_and_gives_same_logprobs(env):
    from transformers import AutoTokenizer

    out = os.path.join(env["root"], "hf_export")
    env["two"].save_hf(out)
    model = hf_model(out)
    batch = make_batch(model.config.vocab_size, seed=5)
    with torch.no_grad():
        exported, _ = causal_lm_logprobs(model, batch.input_ids, batch.attention_mask)
    learner = env["two"].compute_logprobs(batch)
    mask = valid_positions(batch)
    assert (exported[mask] - learner[mask]).abs().max().item() < 1e-5
    original = hf_model(env["model_dir"])
    with torch.no_grad():
        base, _ = causal_lm_logprobs(original, batch.input_ids, batch.attention_mask)
    assert (base[mask] - learner[mask]).abs().max().item() > 1e-4  # the export holds trained weights
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template and tok.eos_token == "<|im_end|>"


def test_sft_steps_reduce_nll_and_bad_inputs_are_named(env):
    group = env["one"]
    batch = make_batch(env["vocab"], seed=9)
    nll = [group.train_step(batch, "sft")["actor/nll"] for _ in range(3)]
    assert nll[2] < nll[0]
    with pytest.raises(KeyError, match="unknown loss 'kto'"):
        group.train_step(batch, "kto")
    with pytest.raises(ValueError, match="batch of 5 rows is not whole units of 2 rows"):  # dpo: pairs of rows
        group.train_step(batch, "dpo")
    with pytest.raises(KeyError, match="unknown loss_kwargs \\['beta'\\] for loss 'sft'"):
        group.train_step(batch, "sft", {"beta": 0.1})
    empty = make_batch(env["vocab"])
    empty.loss_mask.zero_()
    with pytest.raises(ValueError, match="without response tokens"):
        group.train_step(empty, "sft")


def test_a_batch_with_fewer_rows_than_ranks_trains_with_the_idle_rank_at_weight_zero(env):
    """A sample filter (RAFT) can keep fewer rows than there are ranks: the idle rank still joins
    every collective, on a stand-in row whose loss and metrics count zero times."""
    group = env["two"]
    batch = make_batch(env["vocab"], seed=11).slice(0, 1)
    logprobs = group.compute_logprobs(batch)
    n_tok = float(batch.loss_mask.sum())
    want = float(-(logprobs * batch.loss_mask).sum()) / n_tok
    before = ray.get(group.get_weights_ref())
    metrics = group.train_step(batch, "sft")
    assert metrics["actor/nll"] == pytest.approx(want, rel=1e-5)  # counted once, not once per rank
    assert metrics["actor/num_tokens"] == n_tok
    after = ray.get(group.get_weights_ref())
    assert max((after[k] - before[k]).abs().max().item() for k in before) > 0.5 * LR


def test_bfloat16_rank_trains_and_stays_close_to_fp32(env):
    group = LearnerGroup(1, env["model_dir"], num_cpus_per_rank=0.5, lr=LR, micro_batch_size=4, dtype="bfloat16")
    try:
        batch = make_batch(env["vocab"], seed=4)
        model = hf_model(env["model_dir"])
        with torch.no_grad():
            base, _ = causal_lm_logprobs(model, batch.input_ids, batch.attention_mask)
        bf16 = group.compute_logprobs(batch)
        mask = valid_positions(batch)
        assert bf16.dtype == torch.float32 and bf16.shape == base.shape
        assert (bf16[mask] - base[mask]).abs().max().item() < 0.1  # bf16 rounding only
        first = group.train_step(batch, "sft")
        second = group.train_step(batch, "sft")
        assert torch.isfinite(torch.tensor(first["actor/grad_norm"]))
        assert second["actor/nll"] < first["actor/nll"]
    finally:
        group.shutdown()


def test_a_rank_stuck_in_a_collective_is_named_after_call_timeout(env):
    """A real hang: only rank 0 of a fresh 2-rank group is asked to step, so it blocks in the
    gradient all-reduce waiting for rank 1. The group's call timeout names the silent rank."""
    from aletheia_ray.actors.learner import gather_ranks

    group = LearnerGroup(2, env["model_dir"], num_cpus_per_rank=0.01, lr=LR, micro_batch_size=2,
                         seed=0, call_timeout_s=120)
    try:
        batch = make_batch(env["vocab"])
        num_tokens = float(batch.loss_mask.sum())
        lonely = group.ranks[0].train_step.remote(batch, "grpo", {"beta": 0.0}, global_num_tokens=num_tokens,
                                                  global_num_sequences=5.0, num_micro_batches=3)
        with pytest.raises(TimeoutError, match=r"rank\(s\) \[0\] did not finish train_step within 5s"):
            gather_ranks([lonely], "train_step", timeout_s=5)
    finally:
        group.shutdown()
