"""Token log-probabilities, entropy and masked reductions from logits (pure tensor functions)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.utils.checkpoint

from aletheia_ray.device import check_on_device, model_device


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log p(labels[b, t] | ...) from ``logits[b, t]`` ([B, T, V] and [B, T] -> [B, T]).

    ``temperature`` divides the logits first, so the values match a sampler's post-temperature
    ("processed") logprobs. Computed as ``logit - logsumexp`` to avoid a [B, T, V] log-softmax copy.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    picked = torch.gather(logits, -1, labels.long().unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the categorical distribution at each position ([B, T, V] -> [B, T])."""
    logits = logits.float()
    log_p = torch.log_softmax(logits, dim=-1)
    return -(log_p.exp() * log_p).sum(-1)


def masked_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum()


def masked_mean(values: torch.Tensor, mask: torch.Tensor, denominator: Optional[float] = None) -> torch.Tensor:
    """Sum of ``values`` over ``mask`` divided by ``denominator`` (default: the mask's own count).

    Passing the GLOBAL token count as ``denominator`` makes per-micro-batch / per-rank results
    add up to the batch mean (DAPO token-level aggregation under data parallelism).
    """
    if denominator is None:
        denominator = mask.sum().item()
    if denominator <= 0:
        raise ValueError(f"masked_mean needs a positive token count, got {denominator}")
    return masked_sum(values, mask) / denominator


def expand_to_tokens(per_sample_or_token: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-sample [B] tensor to per-token [B, T]; a [B, T] tensor is returned as is."""
    if per_sample_or_token.dim() == 1:
        return per_sample_or_token.unsqueeze(-1).expand_as(like)
    if per_sample_or_token.shape != like.shape:
        raise ValueError(f"per-token tensor shape {tuple(per_sample_or_token.shape)} != {tuple(like.shape)}")
    return per_sample_or_token


def causal_lm_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The plain path: log p(input_ids[:, t+1] | prefix) from the full logits ([B, T] -> [B, T-1]).

    Materialises [B, T, V] logits (and fp32 copies): fine for tests and tiny models, the memory
    wall for real ones. Training uses ``scored_logprobs``, which tests compare against this.
    Right padding only, so default position ids (0..T-1) are right for every row.
    """
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[:, :-1]
    logprobs = token_logprobs(logits, input_ids[:, 1:], temperature)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = entropy_from_logits(logits / temperature if temperature != 1.0 else logits)
    return logprobs, entropy


# Config fields that change logits after the output head (Gemma-2 soft-capping, Cohere/Granite
# scaling): scored_logprobs applies the head itself, so such models are refused, not mis-scored.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def output_head(model: torch.nn.Module) -> torch.nn.Module:
    """The model's output projection (``lm_head``), checking nothing else transforms its logits."""
    module = getattr(model, "module", model)  # a DeepSpeed engine wraps the HF model
    config = getattr(module, "config", None)
    for key in _LOGIT_TRANSFORMS:
        if getattr(config, key, None) not in (None, 1.0):
            raise NotImplementedError(f"{type(module).__name__} sets config.{key}={getattr(config, key)}: "
                                      "scored_logprobs applies only the plain output head")
    head = module.get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(module).__name__} has no output embeddings (not a causal LM head model)")
    return head


def _score_chunk(head: torch.nn.Module, hidden: torch.Tensor, labels: torch.Tensor, temperature: float,
                 with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor]:
    logits = head(hidden).float()  # [n, V]: the only place logits exist, n <= chunk_tokens
    logprobs = token_logprobs(logits, labels, temperature)
    if not with_entropy:
        return logprobs, logprobs.new_zeros(())
    with torch.no_grad():
        entropy = entropy_from_logits(logits / temperature if temperature != 1.0 else logits)
    return logprobs, entropy


def final_hidden_states(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, T, H] hidden states after the final norm, without the [B, T, V] logits, from the model
    call itself (a DeepSpeed engine's forward does ZeRO's bookkeeping and registers its backward
    hooks on the call's outputs), asking for one position of logits.

    With gradients the loss must depend on an output of the call, so every layer's hidden state is
    returned (``hidden_states[-1]`` is after the final norm); the layers' inputs are kept for the
    backward anyway. Without gradients a forward hook on the decoder takes its last hidden state,
    so no tuple of every layer's states is held."""
    if torch.is_grad_enabled():
        out = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False,
                    output_hidden_states=True, logits_to_keep=1)
        return out.hidden_states[-1]
    captured = []
    decoder = getattr(model, "module", model).get_decoder()
    handle = decoder.register_forward_hook(lambda module, args, out: captured.append(out[0]))
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, logits_to_keep=1)
    finally:
        handle.remove()
    return captured[-1]


def chunk_bounds(num_rows: int, chunk_tokens: int, num_chunks: Optional[int] = None) -> list[tuple[int, int]]:
    """[start, end) of each output-head call over ``num_rows`` scored positions. With ``num_chunks``
    exactly that many calls (ZeRO-3: each call gathers the head's weight, a collective every rank
    must make as often): near-equal pieces, then empty ones (a stand-in row, result times 0)."""
    if num_chunks is None:
        return [(s, min(s + chunk_tokens, num_rows)) for s in range(0, num_rows, chunk_tokens)]
    needed = -(-num_rows // chunk_tokens)
    if num_chunks < needed:
        raise ValueError(f"num_chunks={num_chunks} is fewer than the {needed} chunks of <= {chunk_tokens} "
                         f"positions that {num_rows} scored positions need")
    pieces = min(num_chunks, num_rows)
    edges = [round(i * num_rows / pieces) for i in range(pieces + 1)] if pieces else [0]
    return list(zip(edges[:-1], edges[1:])) + [(0, 0)] * (num_chunks - pieces)


def scored_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    scored_mask: Optional[torch.Tensor] = None,
    *,
    temperature: float = 1.0,
    with_entropy: bool = False,
    chunk_tokens: int = 1024,
    num_chunks: Optional[int] = None,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Per-token logprobs (and entropy, no gradient) at the scored positions only, never holding
    [rows, all positions, vocab] logits: [B, T] -> [B, T-1] float32, zeros off ``scored_mask``.

    ``scored_mask`` [B, T-1] (default: every real token, ``attention_mask[:, 1:]``) picks the
    positions; their final hidden states go through the output head ``chunk_tokens`` at a time
    (``num_chunks``: exactly that many calls, see ``chunk_bounds``). With gradients on, each chunk
    is recomputed in the backward pass (activation checkpointing of the head), so the backward
    holds one chunk's logits too. ``model`` may be a DeepSpeed engine: calling it (not its module)
    keeps ZeRO's hooks (``final_hidden_states``). Every tensor must already be on the model's
    device (``model_device``): a missed move fails here, named.
    """
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    if scored_mask is None:
        scored_mask = attention_mask[:, 1:]
    check_on_device("scored_logprobs", model_device(model), input_ids=input_ids, attention_mask=attention_mask,
                    scored_mask=scored_mask)
    hidden = final_hidden_states(model, input_ids, attention_mask)[:, :-1]  # predicts input_ids[:, 1:]
    where = scored_mask.bool().nonzero(as_tuple=True)
    picked_hidden, labels = hidden[where], input_ids[:, 1:][where]  # [N, H], [N]
    head = output_head(model)
    recompute = torch.is_grad_enabled() and picked_hidden.requires_grad
    logprob_parts, entropy_parts, stand_ins = [], [], []
    for start, end in chunk_bounds(picked_hidden.shape[0], chunk_tokens, num_chunks):
        rows = slice(start, end) if end > start else slice(0, 1)  # an empty piece still calls the head
        args = (head, picked_hidden[rows], labels[rows], temperature, with_entropy)
        if recompute:
            lp, ent = torch.utils.checkpoint.checkpoint(_score_chunk, *args, use_reentrant=False)
        else:
            lp, ent = _score_chunk(*args)
        if end > start:
            logprob_parts.append(lp)
            entropy_parts.append(ent)
        else:
            stand_ins.append(lp.sum() * 0.0)  # in the graph, so the backward recomputes it as often
    shape = scored_mask.shape
    flat = torch.cat(logprob_parts) if logprob_parts else hidden.new_zeros(0, dtype=torch.float32)
    logprobs = hidden.new_zeros(shape, dtype=torch.float32).index_put(where, flat)
    if stand_ins:
        logprobs = logprobs + torch.stack(stand_ins).sum()
    entropy = None
    if with_entropy:
        flat_entropy = torch.cat(entropy_parts) if entropy_parts else flat.detach()
        entropy = hidden.new_zeros(shape, dtype=torch.float32).index_put(where, flat_entropy)
    return logprobs, entropy
