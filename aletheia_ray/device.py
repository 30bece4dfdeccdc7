"""Where tensors live: the device is taken from the model, never assumed.

* ``model_device(model)``: the device the model computes on (a DeepSpeed engine's, a HF model's,
  or any module's first parameter's).
* ``TrainBatch.to(device)`` (``aletheia_ray/batch.py``) is the one way a batch reaches a model.
* ``check_on_device(where, device, **tensors)`` fails naming every tensor that is elsewhere;
  ``add_forward_device_check(model)`` runs it on every tensor argument of the model's forward, so a
  path that forgets the move fails with that name instead of deep inside a CUDA kernel. The
  learner ranks and the reference actor install it; the scoring function checks its labels and
  masks the same way. The check reads ``tensor.device`` only: no synchronisation, no copy.
"""
from __future__ import annotations

from typing import Any, Optional

import torch


def model_device(model: Any) -> torch.device:
    """The device ``model`` computes on: its ``device`` attribute where it has one (a DeepSpeed
    engine's compute device, which stays right when ZeRO-3 offloads the parameters' storage; a HF
    model's first-parameter device), otherwise the device of its first parameter."""
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    for param in model.parameters():
        return param.device
    raise ValueError(f"{type(model).__name__} has no parameters: cannot tell its device")


def check_on_device(where: str, device: torch.device, **tensors: Any) -> None:
    """Raise naming each tensor of ``tensors`` (None and non-tensors skipped) not on ``device``."""
    wrong = {name: t.device for name, t in tensors.items() if isinstance(t, torch.Tensor) and t.device != device}
    if wrong:
        found = ", ".join(f"{name} on {dev}" for name, dev in wrong.items())
        raise RuntimeError(f"{where}: tensors not on the model's device {device}: {found} "
                           "(move the batch with TrainBatch.to(model_device(model)) first)")


def add_forward_device_check(model: torch.nn.Module, device: Optional[torch.device] = None
                             ) -> torch.utils.hooks.RemovableHandle:
    """Check, before every forward of ``model``, that each tensor argument is on ``device``
    (default: ``model_device(model)`` at call time)."""
    def pre_hook(module, args, kwargs):
        named = {f"arg{i}": a for i, a in enumerate(args)}
        named.update(kwargs)
        check_on_device(f"{type(module).__name__}.forward", device or model_device(module), **named)

    return model.register_forward_pre_hook(pre_hook, with_kwargs=True)
