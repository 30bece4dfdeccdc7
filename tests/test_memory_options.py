"""Memory options on real Ray actors + DeepSpeed over gloo (CPU): each gives the plain ZeRO-2 path's
losses, gradient norms, logprobs and updated weights — gradient checkpointing, token-budget
micro-batches, ZeRO-3, optimizer offload, ZeRO-3 with parameter offload. Two updates each, so the
second step's loss also checks the first update. And the device test: a batch whose tensors report
a host device (``simulated_host_device``: no GPU here) goes through the real ``train_step``,
``compute_logprobs`` and reference paths, which must move it before the model sees it."""
import os
import tempfile

import pytest
import torch

ray = pytest.importorskip("ray")

from aletheia_ray.actors.learner import LearnerGroup  # noqa: E402
from aletheia_ray.actors.reference import ReferenceActor  # noqa: E402
from aletheia_ray.memory_options import MemoryOptions  # noqa: E402
from aletheia_ray.models import build_tiny_model  # noqa: E402
from simulated_host_device import HOST, on_host  # noqa: E402
from test_learner_group import GRPO_KWARGS, make_batch  # noqa: E402

pytestmark = pytest.mark.slow  # ~3 min: six 2-rank DeepSpeed groups one after the other

LR = 1e-3
OPTIONS = {
    "gradient_checkpointing": MemoryOptions(gradient_checkpointing=True),
    "token_budget": MemoryOptions(max_tokens_per_micro_batch=24, logprob_chunk_tokens=3),
    "zero3": MemoryOptions(zero_stage=3),
    # ranks whose micro-batches need different numbers of head chunks (responses of 6, 2, 9, 4, 1 tokens):
    # each chunk gathers lm_head, a collective, so every rank must make as many calls or it hangs
    "zero3_uneven_chunks": MemoryOptions(zero_stage=3, logprob_chunk_tokens=2, max_tokens_per_micro_batch=24),
    "offload_optimizer": MemoryOptions(offload_optimizer=True),
    "zero3_offload_all": MemoryOptions(zero_stage=3, offload_params=True, offload_optimizer=True,
                                       gradient_checkpointing=True, max_tokens_per_micro_batch=30),
}
COMPARED = ("actor/loss", "actor/pg_loss", "actor/kl", "actor/entropy", "actor/ratio_mean")


@pytest.fixture(scope="module")
def env():
    root = tempfile.mkdtemp(prefix="/tmp/alt_memopt_")
    model_dir = build_tiny_model(os.path.join(root, "model"), seed=0)
    tests_dir = os.path.dirname(os.path.abspath(__file__))  # actors unpickle simulated_host_device.HostTensor
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=os.path.join(root, "ray"),
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [tests_dir, os.environ.get("PYTHONPATH")]))}})
    from transformers import AutoConfig

    yield {"model_dir": model_dir, "vocab": AutoConfig.from_pretrained(model_dir).vocab_size}
    ray.shutdown()


def run_two_updates(env: dict, memory: MemoryOptions) -> dict:
    """Old logprobs, two GRPO updates on the same batch, the weights after them."""
    group = LearnerGroup(2, env["model_dir"], num_cpus_per_rank=0.5, lr=LR, micro_batch_size=2, grad_clip=100.0,
                         seed=0, memory=memory)
    try:
        init = ray.get(group.get_weights_ref())
        batch = make_batch(env["vocab"], seed=7)
        old = group.compute_logprobs(batch, scored="response")
        batch.old_logprobs = old
        batch.ref_logprobs = old - 0.05 * torch.randn(old.shape, generator=torch.Generator().manual_seed(1))
        steps = [group.train_step(batch, "grpo", GRPO_KWARGS) for _ in range(2)]
        return {"old": old, "steps": steps, "init": init, "weights": ray.get(group.get_weights_ref()),
                "after": group.compute_logprobs(batch, scored="response")}
    finally:
        group.shutdown()


@pytest.fixture(scope="module")
def plain(env):
    return run_two_updates(env, MemoryOptions())


@pytest.mark.parametrize("name", list(OPTIONS))
def test_memory_option_gives_the_plain_losses_gradients_and_weights(env, plain, name):
    got = run_two_updates(env, OPTIONS[name])
    assert (got["old"] - plain["old"]).abs().max().item() < 1e-6
    for step, (g, p) in enumerate(zip(got["steps"], plain["steps"])):
        for key in COMPARED:
            assert g[key] == pytest.approx(p[key], abs=1e-6), (name, step, key)
        assert g["actor/grad_norm"] == pytest.approx(p["actor/grad_norm"], rel=1e-5), (name, step)
    assert got["steps"][1]["actor/loss"] != pytest.approx(got["steps"][0]["actor/loss"], abs=1e-4)  # it moved
    assert got["weights"].keys() == plain["weights"].keys()
    for key, value in plain["weights"].items():  # Adam's g/sqrt(v) magnifies last-bit differences of
        update = value - plain["init"][key]       # near-zero gradient entries: compare each update as a vector
        assert got["weights"][key].shape == value.shape, key
        assert (got["weights"][key] - value).norm() <= 1e-3 * update.norm(), (name, key)
    assert (got["after"] - plain["after"]).abs().max().item() < 1e-5


def test_a_batch_left_on_the_host_is_moved_by_every_learner_and_reference_path(env, plain):
    """The real paths run on a batch whose tensors report device 'meta' until ``.to()``: a path that
    skipped ``TrainBatch.to(model_device)`` would fail in the forward's device check."""
    batch = make_batch(env["vocab"], seed=7)
    host = on_host(batch)
    assert host.input_ids.device == HOST and host.slice(0, 2).loss_mask.device == HOST
    group = LearnerGroup(2, env["model_dir"], num_cpus_per_rank=0.5, lr=LR, micro_batch_size=2, grad_clip=100.0,
                         seed=0, memory=MemoryOptions(max_tokens_per_micro_batch=24))
    ref = ReferenceActor.options(num_cpus=0.5).remote(env["model_dir"], micro_batch_size=2,
                                                      max_tokens_per_micro_batch=24)
    try:
        old = group.compute_logprobs(host, scored="response")
        assert (old - plain["old"]).abs().max().item() < 1e-6
        assert (ray.get(ref.compute_logprobs.remote(host, 1.0, "response")) - old).abs().max().item() < 1e-6
        host.old_logprobs, host.ref_logprobs = on_host(batch).loss_mask * 0 + old, old.clone()
        metrics = group.train_step(on_host(host), "grpo", GRPO_KWARGS)
        assert metrics["actor/ratio_mean"] == pytest.approx(1.0, abs=1e-5)
    finally:
        group.shutdown()
        ray.kill(ref)
