"""Reference-model actor: frozen HF model giving reference logprobs for the KL term.

The controller re-syncs it from the learner every ``ref_sync_steps`` (paper: 100) with
``load_weights(learner_group.get_weights_ref())``, and does not create it at all when beta = 0.
"""
from __future__ import annotations

import ray
import torch

from actors.learner import batch_logprobs, load_causal_lm
from aletheia_ray.batch import TrainBatch


@ray.remote
class ReferenceActor:
    def __init__(self, model_path: str, dtype: str = "float32", *, attn_implementation: str = "sdpa",
                 micro_batch_size: int = 8, device: str = "auto"):
        self.model = load_causal_lm(model_path, dtype, attn_implementation)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model.to(device).requires_grad_(False)
        self.micro_batch_size = micro_batch_size
        self.num_reloads = 0

    def compute_logprobs(self, batch: TrainBatch, temperature: float = 1.0) -> torch.Tensor:
        """[B, T-1] reference logprobs aligned with ``batch.input_ids[:, 1:]``."""
        return batch_logprobs(self.model, batch, self.micro_batch_size, temperature)

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
