"""Reference-model actor: frozen HF model giving reference logprobs for the KL term.

The controller re-syncs it from the learner every ``ref_sync_steps`` (paper: 100) with
``load_weights(learner_group.get_weights_ref())``, and does not create it at all when beta = 0.

Memory: one unsharded copy of the weights in the model dtype and no gradients or optimizer
states, so it needs a fraction of a learner rank's memory (docs/memory.md says why it is not
sharded or offloaded). Its logprob pass is the learner's: chunked over the scored positions,
micro-batched by rows or by a token budget, on the device its parameters are on.
"""
from __future__ import annotations

from typing import Optional

import ray
import torch

from aletheia_ray.batch import TrainBatch
from aletheia_ray.causal_lm import Scored, batch_logprobs, load_causal_lm
from aletheia_ray.device import add_forward_device_check
from aletheia_ray.memory_options import peak_memory_gb
from aletheia_ray.threads import apply_thread_budget, thread_report


@ray.remote
class ReferenceActor:
    def __init__(self, model_path: str, dtype: str = "float32", *, attn_implementation: str = "sdpa",
                 micro_batch_size: int = 8, max_tokens_per_micro_batch: Optional[int] = None,
                 logprob_chunk_tokens: int = 1024, device: str = "auto", num_threads: int = 1):
        apply_thread_budget(num_threads)  # before the model loads (aletheia_ray/threads.py)
        self.model = load_causal_lm(model_path, dtype, attn_implementation)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model.to(device).requires_grad_(False)
        add_forward_device_check(self.model)
        self.micro_batch_size, self.max_tokens = micro_batch_size, max_tokens_per_micro_batch
        self.chunk_tokens = logprob_chunk_tokens
        self.num_reloads = 0

    def compute_logprobs(self, batch: TrainBatch, temperature: float = 1.0, scored: Scored = "all") -> torch.Tensor:
        """[B, T-1] reference logprobs aligned with ``batch.input_ids[:, 1:]``, at the scored
        positions ("all" real tokens | the "response" tokens), zeros elsewhere."""
        return batch_logprobs(self.model, batch, micro_batch_size=self.micro_batch_size, max_tokens=self.max_tokens,
                              temperature=temperature, chunk_tokens=self.chunk_tokens, scored=scored)

    def peak_memory(self) -> dict[str, float]:
        return peak_memory_gb()

    def placement(self) -> dict:
        """Where Ray put this actor (placement group id in hex or None, node id, GPU ids)."""
        ctx = ray.get_runtime_context()
        return {"placement_group_id": ctx.get_placement_group_id(), "node_id": ctx.get_node_id(),
                "gpu_ids": ray.get_gpu_ids()}

    def threads(self) -> dict:
        return thread_report()

    def load_weights(self, state_dict) -> int:
        """Replace all weights (a state dict or an ObjectRef to one); names must match exactly."""
        if isinstance(state_dict, ray.ObjectRef):
            state_dict = ray.get(state_dict)
        expected = set(self.model.state_dict())
        missing, unexpected = expected - set(state_dict), set(state_dict) - expected
        if missing or unexpected:
            raise KeyError(f"reference load_weights: missing {sorted(missing)[:5]}, "
                           f"unexpected {sorted(unexpected)[:5]} (of {len(state_dict)} tensors)")
        with torch.no_grad():
            self.model.load_state_dict(state_dict, strict=True)
        self.num_reloads += 1
        return self.num_reloads
