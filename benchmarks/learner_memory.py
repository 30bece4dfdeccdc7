"""Learner memory options side by side on a real model: peak resident memory of each learner rank,
seconds of the old-logprob pass and of one GRPO update, and the loss (equal across options), for the
same batch of real fixture prompts under each option set, one fresh 2-rank learner group per set;
then the reference actor's pass the old way (every position's logits of a 32-row micro-batch at
once) and the new way.

The batch: the first ``--rows`` prompts that ``configs/debug_cpu.yaml`` trains on (HumanEval
lists, instruct style, <= 640 prompt tokens) with ``--response-tokens`` sampled response tokens
each, so the shapes are those of the demo's training step. ``one_chunk`` is the demo's
``micro_batch_size`` 32 with all scored positions in one chunk (the old path's shape); the others
use ``learner.logprob_chunk_tokens`` = 1024.

    flock /tmp/aletheia-heavy.lock python3 benchmarks/learner_memory.py [--model embedded:smollm2] \
        [--rows 16] [--response-tokens 64] [--sets one_chunk,rows4,budget,budget_ckpt] \
        [--reference-sets ref_like_before,ref_budget]

A set that runs the machine out of memory (Ray's OOM monitor kills a rank) is reported as a row.
"""
from __future__ import annotations

import argparse
import os
import time

import ray
import torch
from rich.console import Console
from rich.table import Table
from transformers import AutoTokenizer

from aletheia_ray.actors.cluster import ray_session
from aletheia_ray.actors.learner import LearnerGroup
from aletheia_ray.actors.reference import ReferenceActor
from aletheia_ray.config import load_config
from aletheia_ray.memory_options import MemoryOptions
from aletheia_ray.models import resolve_model_path
from aletheia_ray.batch import sequences_to_batch
from aletheia_ray.train_config import TrainConfig
from benchmarks.sync_modes import REPO

BIG = 10**9
SETS = {  # name -> (learner.micro_batch_size, MemoryOptions)
    "one_chunk": (32, MemoryOptions(logprob_chunk_tokens=BIG)),
    "chunked": (32, MemoryOptions()),
    "rows4": (4, MemoryOptions()),
    "budget": (32, MemoryOptions(max_tokens_per_micro_batch=2048)),
    "budget_ckpt": (32, MemoryOptions(max_tokens_per_micro_batch=4096, gradient_checkpointing=True)),
    "zero3": (32, MemoryOptions(max_tokens_per_micro_batch=2048, zero_stage=3)),
    "offload_optimizer": (32, MemoryOptions(max_tokens_per_micro_batch=2048, offload_optimizer=True)),
}
# reference actor: name -> (micro_batch_size, max_tokens_per_micro_batch, logprob_chunk_tokens, scored positions)
REFERENCE_SETS = {
    "ref_like_before": (32, None, BIG, "all"),  # the old pass: logits of every position of a micro-batch at once
    "ref_budget": (32, 4096, 1024, "response"),  # configs/smollm2_cpu.yaml
}


def real_batch(model: str, rows: int, response_tokens: int):
    cfg = load_config(REPO / "configs" / "debug_cpu.yaml", [f"model.path={model}", "cold_start.enabled=false",
                                                             f"rollout.max_new_tokens={response_tokens}"],
                      schema=TrainConfig)
    path = resolve_model_path(cfg.model.path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    prompts = cfg.data.task.load(cfg, tokenizer).prompt_ids[:rows]
    g = torch.Generator().manual_seed(0)
    responses = [torch.randint(100, tokenizer.vocab_size, (response_tokens,), generator=g).tolist() for _ in prompts]
    batch = sequences_to_batch(prompts, responses, pad_id=tokenizer.pad_token_id or 0,
                               advantages=torch.randn(len(prompts), generator=g))
    return path, batch


def measure(path: str, batch, micro_batch_size: int, memory: MemoryOptions) -> dict:
    group = LearnerGroup(2, path, num_cpus_per_rank=0.5, lr=1e-6, micro_batch_size=micro_batch_size, memory=memory)
    try:
        start = time.perf_counter()
        batch.old_logprobs = group.compute_logprobs(batch, scored="response")
        logprob_s = time.perf_counter() - start
        start = time.perf_counter()
        metrics = group.train_step(batch, "grpo", {"beta": 0.0})
        update_s = time.perf_counter() - start
        peaks = group.peak_memory()
        return {"logprob_s": logprob_s, "update_s": update_s, "loss": metrics["actor/loss"],
                "rank_gb": [peaks[f"memory/learner_rank{r}/peak_rss_gb"] for r in range(2)]}
    finally:
        group.shutdown()


def measure_reference(path: str, batch, rows: int, max_tokens, chunk_tokens: int, scored: str) -> dict:
    ref = ReferenceActor.options(num_cpus=1).remote(path, micro_batch_size=rows, max_tokens_per_micro_batch=max_tokens,
                                                    logprob_chunk_tokens=chunk_tokens)
    try:
        start = time.perf_counter()
        ray.get(ref.compute_logprobs.remote(batch, 1.0, scored))
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "peak_gb": ray.get(ref.peak_memory.remote())["peak_rss_gb"]}
    finally:
        ray.kill(ref)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="embedded:smollm2")
    p.add_argument("--rows", type=int, default=16)
    p.add_argument("--response-tokens", type=int, default=64)
    p.add_argument("--sets", default="one_chunk,rows4,budget,budget_ckpt")
    p.add_argument("--reference-sets", default="", help=f"comma-separated, of {sorted(REFERENCE_SETS)}")
    args = p.parse_args(argv)
    names = [n for n in args.sets.split(",") if n]
    ref_names = [n for n in args.reference_sets.split(",") if n]
    unknown = [n for n in names if n not in SETS] + [n for n in ref_names if n not in REFERENCE_SETS]
    if unknown:
        raise SystemExit(f"unknown set(s) {unknown}; known: {sorted(SETS)}, {sorted(REFERENCE_SETS)}")
    path, batch = real_batch(args.model, args.rows, args.response_tokens)
    lengths = batch.row_lengths()
    print(f"{len(batch)} rows, tokens per row {min(lengths)}-{max(lengths)}, "
          f"{sum(lengths)} real tokens, {batch.input_ids.numel()} padded", flush=True)
    table = Table(title=f"learner memory, {os.path.basename(path)}, 2 ZeRO ranks on 2 CPU cores")
    for column in ("set", "rows/mb", "options", "rank0 peak GB", "rank1 peak GB", "old logprob s", "update s", "loss"):
        table.add_column(column)
    ref_table = Table(title="reference actor (no gradients), same batch")
    for column in ("set", "rows/mb", "token budget", "chunk", "scored", "peak GB", "seconds"):
        ref_table.add_column(column)
    with ray_session(num_cpus=2, prefix="bench_learner_memory_"):
        for name in names:
            rows, memory = SETS[name]
            try:
                result = measure(path, batch, rows, memory)
            except Exception as exc:  # noqa: BLE001 - an option set that runs the box out of memory is a row too
                oom = "memory" in str(exc).lower()
                print(name, "FAILED:", str(exc).splitlines()[0][:300], flush=True)
                table.add_row(name, str(rows), _describe(memory), "OOM-killed" if oom else "failed", "", "", "", "")
                continue
            print(name, result, flush=True)
            table.add_row(name, str(rows), _describe(memory), *(f"{gb:.2f}" for gb in result["rank_gb"]),
                          f"{result['logprob_s']:.1f}", f"{result['update_s']:.1f}", f"{result['loss']:.6f}")
        for name in ref_names:
            rows, max_tokens, chunk, scored = REFERENCE_SETS[name]
            result = measure_reference(path, batch, rows, max_tokens, chunk, scored)
            print(name, result, flush=True)
            ref_table.add_row(name, str(rows), str(max_tokens), "all" if chunk == BIG else str(chunk), scored,
                              f"{result['peak_gb']:.2f}", f"{result['seconds']:.1f}")
    Console(width=160).print(table)
    if ref_names:
        Console(width=160).print(ref_table)


def _describe(memory: MemoryOptions) -> str:
    default = MemoryOptions()
    changed = {k: v for k, v in memory.__dict__.items() if v != getattr(default, k)}
    return ", ".join(f"{k}={'all' if v == BIG else v}" for k, v in changed.items()) or "defaults"


if __name__ == "__main__":
    main()
