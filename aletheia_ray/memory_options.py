"""The learner's memory options as plain functions (no Ray): DeepSpeed ZeRO config, activation
(gradient) checkpointing, and how much memory a process has used.

Which option a model size needs: ``docs/memory.md`` (measured on CPU, estimated for 8 x H200).
Every option is tested for equal losses and gradients against the plain path
(``tests/test_memory_options.py``).
"""
from __future__ import annotations

import resource
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:  # torch is imported where used: the config imports MemoryOptions before any model
    import torch

ZERO_STAGES = (2, 3)


@dataclass(frozen=True)
class MemoryOptions:
    """What a learner rank (and, for the logprob pass, the reference actor) does to save memory."""

    zero_stage: int = 2  # 3: parameters partitioned too (every forward/backward gathers them)
    offload_optimizer: bool = False  # fp32 master weights + Adam moments in host memory
    offload_params: bool = False  # ZeRO-3 only: parameters in host memory between uses
    gradient_checkpointing: bool = False  # recompute decoder layers in the backward pass
    max_tokens_per_micro_batch: Optional[int] = None  # token budget; rows grouped by length
    logprob_chunk_tokens: int = 1024  # scored positions whose logits exist at once

    def __post_init__(self):
        deepspeed_config(micro_batch_size=1, grad_clip=1.0, dtype="float32", zero_stage=self.zero_stage,
                         offload_optimizer=self.offload_optimizer, offload_params=self.offload_params)
        if self.logprob_chunk_tokens < 1:
            raise ValueError(f"logprob_chunk_tokens must be >= 1, got {self.logprob_chunk_tokens}")
        if self.max_tokens_per_micro_batch is not None and self.max_tokens_per_micro_batch < 1:
            raise ValueError(f"max_tokens_per_micro_batch must be >= 1, got {self.max_tokens_per_micro_batch}")


def deepspeed_config(*, micro_batch_size: int, grad_clip: float, dtype: str, zero_stage: int = 2,
                     offload_optimizer: bool = False, offload_params: bool = False,
                     pin_memory: bool = False) -> dict[str, Any]:
    """DeepSpeed config of one learner rank. Gradient accumulation is driven by hand (one
    ``train_step`` = one optimizer step), so DeepSpeed is told 1. The optimizer is a client torch
    AdamW (no ~220 s FusedAdam JIT build on CPU); with optimizer offload DeepSpeed would insist on
    its CPU Adam, which ``zero_force_ds_cpu_optimizer: false`` lifts (the learner passes
    DeepSpeedCPUAdam itself on GPU, see ``uses_deepspeed_cpu_adam``). ``pin_memory`` (GPU): offloaded
    tensors in page-locked host memory, so copies to and from the GPU are asynchronous."""
    if zero_stage not in ZERO_STAGES:
        raise ValueError(f"learner.zero_stage must be one of {ZERO_STAGES}, got {zero_stage}")
    if offload_params and zero_stage != 3:
        raise ValueError("learner.offload_params needs learner.zero_stage=3 (ZeRO-2 keeps full parameters on every rank)")
    zero: dict[str, Any] = {"stage": zero_stage, "overlap_comm": False, "contiguous_gradients": True}
    if offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": pin_memory}
    if offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": pin_memory}
    return {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": dtype == "bfloat16"},
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 2**62,
    }


def uses_deepspeed_cpu_adam(offload_optimizer: bool, device: torch.device) -> bool:
    """On GPU, offloaded optimizer states are updated by DeepSpeed's vectorised CPU Adam (what
    ZeRO-Offload is built for); on a CPU-only machine torch's AdamW does the same math without
    the op's JIT compile."""
    return offload_optimizer and device.type != "cpu"


def make_optimizer(model: torch.nn.Module, *, lr: float, weight_decay: float, offload_optimizer: bool,
                   device: torch.device) -> torch.optim.Optimizer:
    if uses_deepspeed_cpu_adam(offload_optimizer, device):
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(model.parameters(), lr=lr, weight_decay=weight_decay, adamw_mode=True)
    import torch

    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)


def enable_gradient_checkpointing(model: torch.nn.Module) -> int:
    """Recompute each decoder layer in the backward pass instead of keeping its activations.

    HF checkpoints a layer only while ``layer.training`` is true, and the learner keeps its model
    in eval mode (RL logprobs must not see dropout). So only the checkpointed layers themselves
    are switched to training mode, non-recursively: their attention/MLP submodules stay in eval
    mode and no dropout is turned on. Returns how many layers are checkpointed."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing]
    if not layers:
        raise RuntimeError(f"{type(model).__name__}: gradient_checkpointing_enable() marked no layer")
    for layer in layers:
        layer.training = True
    return len(layers)


def peak_memory_gb() -> dict[str, float]:
    """This process's peak resident memory (``ru_maxrss``) and, with CUDA, the peak allocated
    device memory, in GiB."""
    import torch

    scale = 1 if sys.platform == "darwin" else 1024  # macOS reports bytes, Linux KiB
    out = {"peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_gpu_allocated_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return out
