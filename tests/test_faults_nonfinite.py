"""Non-finite updates through the real LearnerGroup (2 ZeRO-2 ranks over gloo, real Ray actors, the
tiny Qwen2): a NaN loss on one rank, or a NaN gradient with a finite loss (test-only fault
injection ``ALETHEIA_FAULT_NAN_GRAD``), is never applied on any rank; ``skip`` goes on and
counts, its cap and ``stop`` raise naming the step, the rank(s) and the quantity.

Run under the heavy lock: ``flock /tmp/aletheia-heavy.lock python3 -m pytest tests/test_faults_nonfinite.py``.
"""
import math
import os
import tempfile

import pytest
import torch

ray = pytest.importorskip("ray")

from aletheia_ray.actors.learner import LearnerGroup  # noqa: E402
from aletheia_ray.batch import TrainBatch  # noqa: E402
from aletheia_ray.models import build_tiny_model  # noqa: E402
from aletheia_ray.nonfinite import FAULT_NAN_GRAD_ENV, NonFiniteGuard, NonFiniteUpdateError  # noqa: E402

GRPO = {"beta": 0.0, "eps_low": 0.2, "eps_high": 0.28}
LR = 1e-3


def make_batch(vocab_size: int, nan_row=None) -> TrainBatch:
    """4 rows (2 per rank: rows 0-1 on rank 0, rows 2-3 on rank 1); ``nan_row`` gets a NaN advantage."""
    g = torch.Generator().manual_seed(0)
    B, P, R = 4, 5, 4
    ids = torch.randint(10, vocab_size, (B, P + R), generator=g)
    loss_mask = torch.zeros(B, P + R - 1)
    loss_mask[:, P - 1:] = 1.0
    advantages = torch.tensor([1.0, -0.5, 0.7, -1.2])
    if nan_row is not None:
        advantages[nan_row] = float("nan")
    return TrainBatch(input_ids=ids, attention_mask=torch.ones_like(ids), loss_mask=loss_mask, advantages=advantages)


@pytest.fixture(scope="module")
def group():
    root = tempfile.mkdtemp(prefix="/tmp/alt_nonfinite_")
    model_dir = build_tiny_model(os.path.join(root, "model"), seed=0)
    # FAULT INJECTION: rank 1's 3rd train_step backpropagates a NaN-scaled loss (its loss stays finite)
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=os.path.join(root, "ray"),
             runtime_env={"env_vars": {"DS_ACCELERATOR": "cpu", FAULT_NAN_GRAD_ENV: "1:3"}})
    from transformers import AutoConfig

    g = LearnerGroup(2, model_dir, num_cpus_per_rank=0.5, lr=LR, micro_batch_size=2, grad_clip=1.0, seed=0)
    g.vocab = AutoConfig.from_pretrained(model_dir).vocab_size
    yield g
    g.shutdown()
    ray.shutdown()


def weights(group) -> list[dict[str, torch.Tensor]]:
    """Each rank's full weights (ZeRO-2: every rank holds them all)."""
    return ray.get([rank.full_state_dict.remote() for rank in group.ranks])


def assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs"


def max_change(a: dict, b: dict) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_nonfinite_updates_are_never_applied_on_any_rank(group):
    before = weights(group)
    assert_identical(*before)

    # 1. NaN advantage on rank 1 only -> NaN loss there: skipped on both ranks, the run goes on
    m = group.train_step(make_batch(group.vocab, nan_row=3), "grpo", GRPO, step=1)
    assert m["actor/nonfinite_skipped"] == 1.0 and m["actor/nonfinite_skips_total"] == 1.0
    assert math.isnan(m["actor/loss"]) and m["actor/lr"] == pytest.approx(LR)
    after = weights(group)
    for r in (0, 1):
        assert_identical(before[r], after[r])  # bit-identical on both ranks

    # 2. a clean update does change them (no NaN left behind in ZeRO's gradient buffers)
    m = group.train_step(make_batch(group.vocab), "grpo", GRPO, step=2)
    assert m["actor/nonfinite_skipped"] == 0.0 and m["actor/nonfinite_skips_total"] == 1.0
    assert math.isfinite(m["actor/loss"]) and math.isfinite(m["actor/grad_norm"])
    clean = weights(group)
    assert_identical(*clean)
    assert max_change(before[0], clean[0]) > 0.5 * LR  # Adam's first applied step moves weights by ~lr
    assert all(torch.isfinite(t).all() for t in clean[0].values())

    # 3. fault injection: finite loss on every rank, NaN gradient from rank 1 -> the global norm is
    #    non-finite, DeepSpeed skips the step on both ranks
    m = group.train_step(make_batch(group.vocab), "grpo", GRPO, step=3)
    assert math.isfinite(m["actor/loss"]) and not math.isfinite(m["actor/grad_norm"])
    assert m["actor/nonfinite_skipped"] == 1.0 and m["actor/nonfinite_skips_total"] == 2.0
    for r, w in enumerate(weights(group)):
        assert_identical(clean[r], w)


def test_stop_raises_naming_the_step_rank_and_quantity(group):
    start = weights(group)
    group.nonfinite = NonFiniteGuard("stop")
    try:
        with pytest.raises(NonFiniteUpdateError, match=r"RL step 7\): non-finite loss on learner rank\(s\) \[1\]"):
            group.train_step(make_batch(group.vocab, nan_row=2), "grpo", GRPO, step=7)
        with pytest.raises(NonFiniteUpdateError, match=r"RL step 8\): non-finite loss on learner rank\(s\) \[0, 1\]"):
            group.train_step(_nan_on_both(group.vocab), "grpo", GRPO, step=8)
    finally:
        group.nonfinite = NonFiniteGuard("skip", max_skips=1)
    for r, w in enumerate(weights(group)):
        assert_identical(start[r], w)

    # the cap: 1 skip in a row is tolerated, the 2nd in a row stops the run naming its step
    assert group.train_step(make_batch(group.vocab, nan_row=0), "grpo", GRPO, step=9)["actor/nonfinite_skipped"] == 1
    with pytest.raises(NonFiniteUpdateError, match=r"RL step 10\).*2 skipped updates in a row exceed "
                                                   r"learner.max_nonfinite_skips=1"):
        group.train_step(make_batch(group.vocab, nan_row=0), "grpo", GRPO, step=10)
    for r, w in enumerate(weights(group)):
        assert_identical(start[r], w)
    # the ranks are still consistent and usable after the errors
    group.train_step(make_batch(group.vocab), "grpo", GRPO, step=11)
    end = weights(group)
    assert_identical(*end)
    assert max_change(start[0], end[0]) > 0


def _nan_on_both(vocab: int) -> TrainBatch:
    batch = make_batch(vocab, nan_row=0)
    batch.advantages[3] = float("nan")
    return batch
