"""Pure bucketing of named tensors into flat byte buffers (and back), for weight sync.

Both transports move whole buckets (one ``uint8`` buffer of up to ``bucket_bytes``), never one
call per parameter. A tensor larger than ``bucket_bytes`` travels alone in its own bucket. Each
tensor starts at a 64-byte aligned offset, so unpacking is a zero-copy ``view``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import torch

ALIGN = 64


@dataclass(frozen=True)
class TensorSpec:
    """Where one named tensor lives inside a bucket."""

    name: str
    dtype: str  # e.g. "float32", "bfloat16"
    shape: tuple[int, ...]
    offset: int  # byte offset in the bucket
    nbytes: int


@dataclass(frozen=True)
class BucketSpec:
    """The layout of one bucket: which tensors, where, and the total size in bytes."""

    tensors: tuple[TensorSpec, ...]
    nbytes: int


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def dtype_from_name(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown tensor dtype {name!r} in a weight bucket")
    return dtype


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def plan_buckets(
    metas: Iterable[tuple[str, torch.dtype, Sequence[int]]], bucket_bytes: int
) -> list[BucketSpec]:
    """Group ``(name, dtype, shape)`` in order into buckets of at most ``bucket_bytes`` each."""
    if bucket_bytes <= 0:
        raise ValueError(f"bucket_bytes must be positive, got {bucket_bytes}")
    buckets: list[BucketSpec] = []
    current: list[TensorSpec] = []
    offset = 0
    seen: set[str] = set()
    for name, dtype, shape in metas:
        if name in seen:
            raise ValueError(f"weight {name!r} appears twice in the weights to sync")
        seen.add(name)
        shape = tuple(int(s) for s in shape)
        nbytes = torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
        if current and offset + nbytes > bucket_bytes:
            buckets.append(BucketSpec(tuple(current), offset))
            current, offset = [], 0
        current.append(TensorSpec(name, dtype_name(dtype), shape, offset, nbytes))
        offset = _align(offset + nbytes)
    if current:
        buckets.append(BucketSpec(tuple(current), offset))
    return buckets


def pack_bucket(spec: BucketSpec, tensors: Sequence[torch.Tensor], device=None) -> torch.Tensor:
    """Copy ``tensors`` (in ``spec`` order) into one new flat ``uint8`` buffer."""
    if len(tensors) != len(spec.tensors):
        raise ValueError(f"bucket expects {len(spec.tensors)} tensors, got {len(tensors)}")
    device = device if device is not None else (tensors[0].device if tensors else "cpu")
    flat = torch.empty(spec.nbytes, dtype=torch.uint8, device=device)
    for ts, t in zip(spec.tensors, tensors):
        if dtype_name(t.dtype) != ts.dtype or tuple(t.shape) != ts.shape:
            raise ValueError(
                f"weight {ts.name!r} changed between planning and packing: planned "
                f"{ts.dtype}{list(ts.shape)}, got {dtype_name(t.dtype)}{list(t.shape)}"
            )
        src = t.detach().contiguous().reshape(-1).view(torch.uint8)
        flat[ts.offset : ts.offset + ts.nbytes].copy_(src)
    return flat


def iter_packed_buckets(
    named_tensors: Iterable[tuple[str, torch.Tensor]], bucket_bytes: int, device=None
) -> Iterator[tuple[BucketSpec, torch.Tensor]]:
    """Plan and pack ``named_tensors``; yield ``(spec, flat_uint8)`` one bucket at a time.

    Holds references (not copies) to the source tensors; one bucket is materialised at a time.
    """
    named = list(named_tensors)
    specs = plan_buckets(((n, t.dtype, t.shape) for n, t in named), bucket_bytes)
    index = 0
    for spec in specs:
        group = [t for _, t in named[index : index + len(spec.tensors)]]
        index += len(spec.tensors)
        yield spec, pack_bucket(spec, group, device=device)


def unpack_bucket(spec: BucketSpec, flat: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(name, tensor)`` views into ``flat`` (no copy) following ``spec``."""
    if flat.dtype != torch.uint8 or flat.dim() != 1 or flat.numel() != spec.nbytes:
        raise ValueError(
            f"bucket buffer mismatch: expected uint8[{spec.nbytes}], "
            f"got {flat.dtype}{list(flat.shape)}"
        )
    for ts in spec.tensors:
        raw = flat[ts.offset : ts.offset + ts.nbytes]
        yield ts.name, raw.view(dtype_from_name(ts.dtype)).view(ts.shape)


def total_bytes(specs: Iterable[BucketSpec]) -> int:
    """Payload bytes (sum of tensor sizes, without alignment padding)."""
    return sum(ts.nbytes for spec in specs for ts in spec.tensors)
