"""Per-GPU memory estimate for the GRPO learner (DeepSpeed ZeRO, bf16 weights, AdamW), standard library only.

All sizes are decimal GB (1 GB = 1e9 bytes) per learner GPU; the H200's "141 GB" is taken as 141e9 bytes.
Sources: ZeRO (Rajbhandari et al. 2020) for the model states, 2Ψ + 2Ψ + KΨ with K = 12;
Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models") for the
per-layer activation accounting, redone below for a Qwen2 block (GQA, SwiGLU) with flash-attention.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Sequence, Union

GB = 1e9
BF16 = 2
FP32 = 4
ADAM_BYTES_PER_PARAM = 12  # ZeRO paper, K = 12: fp32 master weights + Adam m + Adam v (4 + 4 + 4)
REDUCE_BUCKET_ELEMENTS = 5e8  # DeepSpeed default zero_optimization.reduce_bucket_size; bf16 buffer = 1 GB
RMSNORM_BYTES_PER_ELEMENT = 8  # transformers' unfused RMSNorm: fp32 input + bf16 normalised + bf16 output
LOGITS_FP32_COPIES = 4  # k in logits_bytes
DEFAULT_HEADROOM = 0.10  # share of the GPU left free for the CUDA context, NCCL buffers, fragmentation
PAPER_SEQ_LENS = (4096, 16384)


@dataclass(frozen=True)
class Architecture:
    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied_embeddings: bool

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * (self.hidden // self.heads)


# Published config.json values of the Qwen2.5 checkpoints (no hub on this machine, so written out).
QWEN25_1_5B = Architecture("Qwen2.5-1.5B", 1536, 28, 12, 2, 8960, 151936, tied_embeddings=True)
QWEN25_7B = Architecture("Qwen2.5-7B", 3584, 28, 28, 4, 18944, 152064, tied_embeddings=False)
QWEN25_14B = Architecture("Qwen2.5-14B", 5120, 48, 40, 8, 13824, 152064, tied_embeddings=False)
ARCHITECTURES = {arch.name: arch for arch in (QWEN25_1_5B, QWEN25_7B, QWEN25_14B)}

# The table's option sets, ordered by how much throughput they cost (the first that fits is "needed").
OPTION_SETS = {
    "a": ("ZeRO-2, full logits", dict(zero_stage=2, logits="full")),
    "b": ("ZeRO-2, chunked logits", dict(zero_stage=2, logits="chunked")),
    "c": ("ZeRO-2, chunked, ckpt", dict(zero_stage=2, logits="chunked", gradient_checkpointing=True)),
    "d": ("ZeRO-3, chunked, ckpt", dict(zero_stage=3, logits="chunked", gradient_checkpointing=True)),
    "e": ("ZeRO-2, chunked, ckpt, offload optimizer",
          dict(zero_stage=2, logits="chunked", gradient_checkpointing=True, offload_optimizer=True)),
}


def resolve_architecture(arch: Union[Architecture, str]) -> Architecture:
    if isinstance(arch, Architecture):
        return arch
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch]


def layer_parameters(arch: Architecture) -> int:
    """Parameters of one decoder layer: q/k/v with biases, o_proj without, SwiGLU MLP, 2 RMSNorms."""
    h, kv = arch.hidden, arch.kv_dim
    attention = (h * h + h) + 2 * (h * kv + kv) + h * h
    mlp = 3 * h * arch.intermediate  # gate_proj, up_proj, down_proj
    return attention + mlp + 2 * h


def num_parameters(arch: Union[Architecture, str]) -> int:
    """Ψ: all decoder layers + embeddings (+ lm_head when untied) + the final RMSNorm."""
    arch = resolve_architecture(arch)
    embeddings = arch.vocab * arch.hidden * (1 if arch.tied_embeddings else 2)
    return arch.layers * layer_parameters(arch) + embeddings + arch.hidden


def layer_activation_bytes_per_token(arch: Architecture, seq_len: int, flash_attention: bool = True) -> int:
    """Bytes autograd keeps per token for one transformers Qwen2 decoder layer until its backward."""
    # Korthikanti et al. count 34h + 5as bytes/token/layer for a GPT block. For a Qwen2 block as run
    # by transformers (bf16, no dropout), bytes per token; a tensor saved by two ops counts once:
    #   each of the 2 RMSNorms (unfused: x.float() * rsqrt(mean(x^2)), then weight * .to(bf16)):
    #     fp32 input 4h + bf16 normalised 2h + bf16 output 2h (= next matmul input) + fp32 1/rms  2 x 8h
    #   q 2h, k 2kv, v 2kv after RoPE (kept by flash-attention; RoPE keeps only cos/sin)          2h + 4kv
    #   attention output 2h (= o_proj input) + fp32 logsumexp per head                           2h + 4a
    #   gate 2I, up 2I, SiLU(gate) 2I, SiLU(gate)*up 2I (= down_proj input)                       8I
    # Residual adds keep nothing (the residual sum lives on as the next norm's fp32 input).
    # Total 20h + 4kv + 8I + 4a (+8). A fused RMSNorm (e.g. Liger) keeps 4h per norm: 8h less.
    h, kv = arch.hidden, arch.kv_dim
    per_token = 2 * RMSNORM_BYTES_PER_ELEMENT * h + 4 * h + 4 * kv + 8 * arch.intermediate
    per_token += FP32 * arch.heads + 2 * FP32
    if not flash_attention:
        # Eager attention: k/v repeated to all heads (2h each) and, per key position, the fp32 softmax
        # output plus its bf16 copy used by probs @ v (the 5as term of Korthikanti et al., without dropout).
        per_token += 4 * (h - kv) + (FP32 + BF16) * arch.heads * seq_len
    return per_token


def activation_bytes(arch: Architecture, *, seq_len: int, tokens: int, gradient_checkpointing: bool,
                     flash_attention: bool) -> float:
    """Activations of one micro-batch of ``tokens`` tokens (sequences of ``seq_len``)."""
    one_layer = tokens * layer_activation_bytes_per_token(arch, seq_len, flash_attention)
    final_norm = tokens * RMSNORM_BYTES_PER_ELEMENT * arch.hidden  # output = lm_head input
    if gradient_checkpointing:
        # Each layer keeps only its bf16 input; backward recomputes one layer at a time.
        return arch.layers * tokens * arch.hidden * BF16 + one_layer + final_norm
    return arch.layers * one_layer + final_norm


def logits_bytes(arch: Architecture, positions: int) -> float:
    """fp32 [positions, vocab] tensors alive at the peak of the logprob computation."""
    # k = 4 copies. Backward of logit[label] - logsumexp(logits): the fp32 logits saved by logsumexp,
    # softmax * grad from logsumexp, the scattered gradient of the gather, and their sum. The no-grad
    # entropy pass (fp32 logits, log_softmax, exp, product) peaks as high. bf16 lm_head output not counted.
    return positions * arch.vocab * FP32 * LOGITS_FP32_COPIES


def parameter_bytes(arch: Architecture, zero_stage: int, world_size: int, offload_params: bool) -> float:
    psi = num_parameters(arch)
    if zero_stage < 3:
        return BF16 * psi
    partition = 0.0 if offload_params else BF16 * psi / world_size
    # ZeRO-3 gathers full weights while they are used: one layer + the prefetched next one, and the
    # embedding / lm_head matrix at the two ends of the model.
    gathered = BF16 * (2 * layer_parameters(arch) + arch.vocab * arch.hidden)
    return partition + gathered


def gradient_bytes(arch: Architecture, zero_stage: int, world_size: int, offload_optimizer: bool) -> float:
    psi = num_parameters(arch)
    if zero_stage < 2:
        return BF16 * psi
    # ZeRO-2/3: each rank keeps its 2Ψ/N partition (on CPU under ZeRO-Offload) + the bf16 reduce bucket.
    partition = 0.0 if offload_optimizer else BF16 * psi / world_size
    return partition + BF16 * REDUCE_BUCKET_ELEMENTS


def optimizer_bytes(arch: Architecture, zero_stage: int, world_size: int, offload_optimizer: bool) -> float:
    if offload_optimizer:
        return 0.0
    return ADAM_BYTES_PER_PARAM * num_parameters(arch) / (world_size if zero_stage >= 1 else 1)


def estimate_learner_memory(arch: Union[Architecture, str], *, seq_len: int, world_size: int = 8,
                            zero_stage: int = 2, offload_optimizer: bool = False, offload_params: bool = False,
                            gradient_checkpointing: bool = False, logits: str = "chunked",
                            logprob_chunk_tokens: int = 1024, micro_batch_tokens: int | None = None,
                            flash_attention: bool = True) -> dict[str, float]:
    """GB per learner GPU at the backward peak, one entry per component plus ``total``.

    A micro-batch holds at least one whole sequence: it has max(micro_batch_tokens, seq_len) tokens.
    """
    arch = resolve_architecture(arch)
    if logits not in ("chunked", "full"):
        raise ValueError(f"unknown logits option {logits!r}; expected 'chunked' or 'full'")
    if zero_stage not in (0, 1, 2, 3):
        raise ValueError(f"unknown zero_stage {zero_stage!r}; expected 0, 1, 2 or 3")
    if offload_params and zero_stage != 3:
        raise ValueError("offload_params needs zero_stage 3")
    if offload_optimizer and zero_stage == 0:
        raise ValueError("offload_optimizer needs zero_stage >= 1")
    if min(seq_len, world_size, logprob_chunk_tokens) <= 0:
        raise ValueError("seq_len, world_size and logprob_chunk_tokens must be positive")
    tokens = max(micro_batch_tokens or seq_len, seq_len)
    positions = tokens if logits == "full" else min(logprob_chunk_tokens, tokens)
    parts = {
        "parameters": parameter_bytes(arch, zero_stage, world_size, offload_params),
        "gradients": gradient_bytes(arch, zero_stage, world_size, offload_optimizer),
        "optimizer": optimizer_bytes(arch, zero_stage, world_size, offload_optimizer),
        "activations": activation_bytes(arch, seq_len=seq_len, tokens=tokens,
                                         gradient_checkpointing=gradient_checkpointing,
                                         flash_attention=flash_attention),
        "logits": logits_bytes(arch, positions),
    }
    estimate = {name: size / GB for name, size in parts.items()}
    estimate["total"] = sum(estimate.values())
    return estimate


def fits(estimate: dict[str, float], gpu_gb: float = 141.0, headroom: float = DEFAULT_HEADROOM) -> bool:
    return estimate["total"] <= gpu_gb * (1.0 - headroom)


def paper_rows(world_size: int = 8, options: Sequence[str] = tuple(OPTION_SETS)) -> list[dict]:
    """One row per model × paper sequence length × option set: labels + the estimate."""
    unknown = [key for key in options if key not in OPTION_SETS]
    if unknown:
        raise ValueError(f"unknown option set(s) {unknown}; known: {sorted(OPTION_SETS)}")
    rows = []
    for arch in ARCHITECTURES.values():
        for seq_len in PAPER_SEQ_LENS:
            for key in options:
                label, kwargs = OPTION_SETS[key]
                estimate = estimate_learner_memory(arch, seq_len=seq_len, world_size=world_size, **kwargs)
                rows.append(dict(model=arch.name, tokens=seq_len, key=key, options=f"({key}) {label}",
                                 estimate=estimate))
    return rows


def paper_table(world_size: int = 8, gpu_gb: float = 141.0, headroom: float = DEFAULT_HEADROOM,
                options: Sequence[str] = tuple(OPTION_SETS)) -> str:
    """Markdown table of paper_rows, then per model the first option set that fits per length."""
    rows = paper_rows(world_size, options)
    lines = [
        f"Per-GPU GB (1 GB = 1e9 bytes), {world_size} learner ranks; fits = total <= "
        f"{gpu_gb:g} GB x {1 - headroom:.2f} = {gpu_gb * (1 - headroom):.1f} GB.",
        "",
        "| model | tokens | options | params | grads | optimizer | activations | logits | total GB | fits |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        e = row["estimate"]
        cells = [row["model"], str(row["tokens"]), row["options"]]
        cells += [f"{e[name]:.1f}" for name in ("parameters", "gradients", "optimizer", "activations",
                                                "logits", "total")]
        cells.append("yes" if fits(e, gpu_gb, headroom) else "no")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for model in ARCHITECTURES:
        needs = []
        for seq_len in PAPER_SEQ_LENS:
            fitting = [r["key"] for r in rows if r["model"] == model and r["tokens"] == seq_len
                       and fits(r["estimate"], gpu_gb, headroom)]
            needs.append(f"{seq_len} tokens: " + (f"({fitting[0]})" if fitting else "none of these"))
        lines.append(f"- {model} needs: " + "; ".join(needs))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Per-GPU learner memory estimate at the paper's scale.")
    parser.add_argument("--world-size", type=int, default=8, help="learner ranks (data-parallel GPUs)")
    parser.add_argument("--gpu-gb", type=float, default=141.0, help="GPU memory in GB (H200: 141)")
    parser.add_argument("--headroom", type=float, default=DEFAULT_HEADROOM, help="share of the GPU kept free")
    args = parser.parse_args(argv)
    print(paper_table(args.world_size, args.gpu_gb, args.headroom))


if __name__ == "__main__":
    main()
