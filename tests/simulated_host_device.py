"""A second device on a CPU-only machine, for device-placement tests (no GPU here).

``HostTensor`` holds ordinary CPU data but reports ``device`` as ``meta`` — "still on the host,
not on the model's device" — until it is moved with ``.to(...)``, which returns a plain tensor.
Slicing, indexing and pickling (Ray) keep the subclass, like a real host tensor stays on the host.
So a code path that forgets ``TrainBatch.to(model_device(model))`` hands the model a tensor whose
device differs from the parameters', and ``aletheia_ray.device``'s checks fail exactly as they
would on a GPU rank; the computation itself runs on real CPU data either way.
"""
from __future__ import annotations

import torch

from aletheia_ray.batch import TrainBatch

HOST = torch.device("meta")


class HostTensor(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func == torch.Tensor.device.__get__:
            return HOST
        out = super().__torch_function__(func, types, args, kwargs or {})
        if func == torch.Tensor.to and isinstance(out, torch.Tensor):
            return out.as_subclass(torch.Tensor)
        return out


def on_host(batch: TrainBatch) -> TrainBatch:
    """The batch with every tensor a ``HostTensor``."""
    return TrainBatch(**{k: None if v is None else v.as_subclass(HostTensor) for k, v in batch.__dict__.items()})
