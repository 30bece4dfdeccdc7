"""Pure bucketing/unbucketing of named tensors for weight sync (no Ray, no vLLM)."""
import pytest
import torch

from aletheia_ray.sync.buckets import (
    ALIGN, BucketSpec, iter_packed_buckets, pack_bucket, plan_buckets, total_bytes, unpack_bucket,
)
from aletheia_ray.sync.errors import SyncError, SyncTimeoutError


def named_tensors():
    g = torch.Generator().manual_seed(0)
    return [
        ("embed.weight", torch.randn(10, 8, generator=g)),  # 320 B
        ("norm.weight", torch.randn(8, generator=g).to(torch.bfloat16)),  # 16 B
        ("big.weight", torch.randn(40, 10, generator=g)),  # 1600 B > bucket
        ("counter", torch.tensor(7, dtype=torch.int64)),  # scalar, 8 B
        ("lm_head.weight", torch.randn(10, 8, generator=g)),  # 320 B
    ]


def test_plan_groups_in_order_and_respects_bucket_size():
    specs = plan_buckets([(n, t.dtype, t.shape) for n, t in named_tensors()], bucket_bytes=512)
    names = [[ts.name for ts in s.tensors] for s in specs]
    assert names == [["embed.weight", "norm.weight"], ["big.weight"], ["counter", "lm_head.weight"]]
    for s in specs:
        assert all(ts.offset % ALIGN == 0 for ts in s.tensors)
        assert s.nbytes <= 512 or len(s.tensors) == 1  # an oversized tensor travels alone
    assert specs[0].tensors[1].offset == 320 and specs[0].tensors[1].nbytes == 16
    assert total_bytes(specs) == 320 + 16 + 1600 + 8 + 320


def test_round_trip_is_bit_exact_and_zero_copy():
    original = named_tensors()
    out = {}
    buckets = list(iter_packed_buckets(original, bucket_bytes=512))
    assert len(buckets) == 3
    for spec, flat in buckets:
        assert flat.dtype == torch.uint8 and flat.numel() == spec.nbytes
        for name, t in unpack_bucket(spec, flat):
            assert t.data_ptr() >= flat.data_ptr() and t.data_ptr() < flat.data_ptr() + flat.numel()
            out[name] = t
    for name, t in original:
        assert out[name].dtype == t.dtype and out[name].shape == t.shape
        assert torch.equal(out[name], t), name


def test_packing_copies_so_later_changes_do_not_leak():
    original = named_tensors()
    (spec, flat), *_ = iter_packed_buckets(original, bucket_bytes=10_000)
    original[0][1].add_(1.0)
    assert not torch.equal(dict(unpack_bucket(spec, flat))["embed.weight"], original[0][1])


def test_non_contiguous_and_view_tensors_pack_their_values():
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    view = base.t()  # non-contiguous
    spec, flat = next(iter_packed_buckets([("w", view)], bucket_bytes=1 << 20))
    assert torch.equal(dict(unpack_bucket(spec, flat))["w"], view)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="appears twice"):
        plan_buckets([("a", torch.float32, (2,)), ("a", torch.float32, (2,))], 64)
    with pytest.raises(ValueError, match="positive"):
        plan_buckets([("a", torch.float32, (2,))], 0)
    spec = plan_buckets([("a", torch.float32, (2,))], 64)[0]
    with pytest.raises(ValueError, match="'a' changed"):
        pack_bucket(spec, [torch.zeros(3)])
    with pytest.raises(ValueError, match="bucket buffer mismatch"):
        list(unpack_bucket(spec, torch.zeros(4, dtype=torch.uint8)))
    with pytest.raises(ValueError, match="unknown tensor dtype"):
        bad = BucketSpec(tensors=(spec.tensors[0].__class__("a", "float99", (2,), 0, 8),), nbytes=8)
        list(unpack_bucket(bad, torch.zeros(8, dtype=torch.uint8)))


def test_sync_errors_carry_parties():
    err = SyncTimeoutError("timed out: rollout engine 1", ["rollout engine 1"])
    assert isinstance(err, TimeoutError) and isinstance(err, SyncError)
    assert err.parties == ["rollout engine 1"]


def test_reload_warning_is_dropped_only_for_layers_without_checkpoint_weights():
    import logging

    from aletheia_ray.actors.weight_sync.vllm_extension import RELOAD_LOGGER, quiet_computed_layer_warnings

    logger, seen = logging.getLogger(RELOAD_LOGGER), []

    class Collect(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    handler = Collect()
    logger.addHandler(handler)
    try:
        with quiet_computed_layer_warnings():
            logger.warning("%s: Failed to load weights", "RotaryEmbedding")
            logger.warning("%s: Failed to load weights", "QKVParallelLinear")  # a real missing weight
        logger.warning("%s: Failed to load weights", "RotaryEmbedding")  # outside a reload: untouched
    finally:
        logger.removeHandler(handler)
    assert seen == ["QKVParallelLinear: Failed to load weights", "RotaryEmbedding: Failed to load weights"]
