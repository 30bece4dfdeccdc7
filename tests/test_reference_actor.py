"""ReferenceActor: real Ray actor; logprobs equal HF, and a resync from the learner takes effect.

Run under the heavy lock: ``flock /tmp/aletheia-heavy.lock timeout 600 pytest tests/test_reference_actor.py``.
"""
import os
import tempfile

import pytest
import torch

ray = pytest.importorskip("ray")

from aletheia_ray.actors.learner import LearnerGroup  # noqa: E402
from aletheia_ray.actors.reference import ReferenceActor  # noqa: E402
from aletheia_ray.algorithms.logprobs import causal_lm_logprobs  # noqa: E402
from aletheia_ray.models import build_tiny_model  # noqa: E402
from test_learner_group import hf_model, make_batch, valid_positions  # noqa: E402



@pytest.fixture(scope="module")
def env():
    root = tempfile.mkdtemp(prefix="/tmp/alt_ref_")
    model_dir = build_tiny_model(os.path.join(root, "model"), seed=0)
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=os.path.join(root, "ray"))
    ref = ReferenceActor.options(num_cpus=0.5).remote(model_dir, "float32", micro_batch_size=2)
    learner = LearnerGroup(1, model_dir, num_cpus_per_rank=0.5, lr=1e-3, micro_batch_size=4)
    yield {"model_dir": model_dir, "ref": ref, "learner": learner}
    learner.shutdown()
    ray.kill(ref)
    ray.shutdown()


def test_reference_logprobs_equal_hf_and_follow_a_resync(env):
    model = hf_model(env["model_dir"])
    batch = make_batch(model.config.vocab_size, seed=2)
    mask = valid_positions(batch)
    with torch.no_grad():
        expected, _ = causal_lm_logprobs(model, batch.input_ids, batch.attention_mask)
    before = ray.get(env["ref"].compute_logprobs.remote(batch))
    assert (before[mask] - expected[mask]).abs().max().item() < 1e-5

    env["learner"].train_step(batch, "sft")
    learner_logp = env["learner"].compute_logprobs(batch)
    still_old = ray.get(env["ref"].compute_logprobs.remote(batch))
    assert torch.equal(still_old, before)  # frozen until the controller resyncs it

    assert ray.get(env["ref"].load_weights.remote(env["learner"].get_weights_ref())) == 1
    after = ray.get(env["ref"].compute_logprobs.remote(batch))
    assert (after[mask] - learner_logp[mask]).abs().max().item() < 1e-5
    assert (after[mask] - before[mask]).abs().max().item() > 1e-4


def test_reference_rejects_mismatched_weights_naming_them(env):
    bad = {"model.embed_tokens.weight": torch.zeros(3, 3), "extra.weight": torch.zeros(1)}
    with pytest.raises(Exception, match="missing .*unexpected \\['extra.weight'\\]"):
        ray.get(env["ref"].load_weights.remote(bad))


def test_reference_missing_model_dir_is_named():
    with pytest.raises(FileNotFoundError, match="/no/such/model"):
        ReferenceActor.__ray_actor_class__("/no/such/model")
