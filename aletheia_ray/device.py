"""Where tensors live: the device is taken from the model, never assumed.

* ``model_device(model)``: the device of the model's parameters (a DeepSpeed engine, a HF model or
  any module; under ZeRO-3 the partitioned parameters still sit on the rank's device).
* ``TrainBatch.to(device)`` (``aletheia_ray/batch.py``) is the one way a batch reaches a model.
* ``check_on_device(where, device, **tensors)`` fails naming every tensor that is elsewhere;
  ``add_forward_device_check(model)`` runs it on every tensor argument of the model's forward, so a
  path that forgets the move fails with that name instead of deep inside a CUDA kernel. The
  learner ranks and the reference actor install it; the scoring function checks its labels and
  masks the same way. The check reads ``tensor.device`` only: no synchronisation, no copy.
"""
from __future__ import annotations

from typing import Any

import torch


def model_device(model: Any) -> torch.device:
    """Device of the first parameter of ``model`` (unwrapping a DeepSpeed engine's ``module``)."""
    module = getattr(model, "module", model)
    for param in module.parameters():
        return param.device
    raise ValueError(f"{type(module).__name__} has no parameters: cannot tell its device")


def check_on_device(where: str, device: torch.device, **tensors: Any) -> None:
    """Raise naming each tensor of ``tensors`` (None and non-tensors skipped) not on ``device``."""
    wrong = {name: t.device for name, t in tensors.items() if isinstance(t, torch.Tensor) and t.device != device}
    if wrong:
        found = ", ".join(f"{name} on {dev}" for name, dev in wrong.items())
        raise RuntimeError(f"{where}: tensors not on the model's device {device}: {found} "
                           "(move the batch with TrainBatch.to(model_device(model)) first)")


def add_forward_device_check(model: torch.nn.Module) -> torch.utils.hooks.RemovableHandle:
    """Check, before every forward of ``model``, that each tensor argument is on its parameters' device."""
    def pre_hook(module, args, kwargs):
        named = {f"arg{i}": a for i, a in enumerate(args)}
        named.update(kwargs)
        check_on_device(f"{type(module).__name__}.forward", model_device(module), **named)

    return model.register_forward_pre_hook(pre_hook, with_kwargs=True)
