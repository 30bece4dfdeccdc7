"""``aletheia-eval run``: generate verdicts with the rollout pool, write predictions, score them.

    aletheia-eval run --model DIR|embedded:tiny --data LISTS.jsonl --out DIR [--k 8] [--pairwise]

Writes ``DIR/predictions.jsonl`` (the format ``aletheia-eval score`` reads), with ``--both-orders``
also ``DIR/predictions_reversed.jsonl`` (every pair shown as j, i), and ``DIR/metrics.json``:
the scorer's metrics plus ``prompts`` (lengths, too-long lists), ``generation`` (timings,
throughput, lengths), ``position_bias`` (pairwise) and ``run`` (the arguments). Starts Ray
locally with its own temp dir unless attached (``--ray-address`` / ``RAY_ADDRESS`` / an
initialised driver, as under ``ray job submit``). Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

from aletheia_ray.eval_prompts import (PROMPT_FORMATS, TOO_LONG_POLICIES, EvalPlan, EvalPlanError,
                                        generation_stats, plan_eval_prompts, position_bias, prediction_rows,
                                        split_pair_orders, write_jsonl)
from aletheia_ray.metrics import TAU_UNDEFINED_MODES
from aletheia_ray.prompts import THINK_OPEN
from aletheia_ray.prompts import STYLES

DEFAULT_K = {"list": 8, "pair": 1}  # pair mode: Kendall tau averages over the k samples of each pair


def register(subparsers) -> None:
    p = subparsers.add_parser("run", help="generate verdicts with a model, then score them",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="HF model directory or 'embedded:tiny'")
    p.add_argument("--data", required=True, type=Path, help="verifier lists (JSONL or parquet)")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--k", type=int, default=None, help="samples per prompt (default: 8 listwise, 1 pairwise)")
    p.add_argument("--pairwise", action="store_true", help="one generation per candidate pair i<j (Kendall tau)")
    p.add_argument("--both-orders", action="store_true",
                   help="pairwise: also show every pair as j, i (position-bias control; scored separately)")
    p.add_argument("--style", choices=STYLES, default="think", help="prompt and verdict style (default: think)")
    p.add_argument("--think-prefill", action="store_true",
                   help=f"think style: append '{THINK_OPEN}' after the generation prompt (for templates that do not open it)")
    p.add_argument("--prompt-format", choices=PROMPT_FORMATS, default="standard",
                   help="standard verifier prompts, or the synthetic learning task's short prompt (as the trainer)")
    p.add_argument("--temperature", type=float, default=0.6)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--max-new-tokens", type=int, default=4096, help="response budget (default 4096; paper: 16k)")
    p.add_argument("--max-model-len", type=int, default=None,
                   help="prompt + response limit (default: the model config's max_position_embeddings)")
    p.add_argument("--too-long", choices=TOO_LONG_POLICIES, default="error",
                   help="a prompt over max_model_len - max_new_tokens: stop (default) or skip its list (reported)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N lists")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-engines", type=int, default=1)
    p.add_argument("--num-cpus-per-engine", type=float, default=1.0)
    p.add_argument("--num-threads-per-engine", type=int, default=None,
                   help="intra-op threads of each engine (default: floor(--num-cpus-per-engine), at least 1)")
    p.add_argument("--num-gpus-per-engine", type=float, default=0.0)
    p.add_argument("--tensor-parallel-size", type=int, default=1)
    p.add_argument("--dtype", default=None,
                   help="vLLM dtype, e.g. float32 or bfloat16 (default: the checkpoint's dtype from config.json)")
    p.add_argument("--kv-cache-gb", type=float, default=1.0, help="CPU KV cache per engine, whole GiB")
    p.add_argument("--no-enforce-eager", dest="enforce_eager", action="store_false",
                   help="let vLLM compile graphs (slower start, faster decode)")
    p.add_argument("--chunk-size", type=int, default=64, help="prompts per generate call (progress granularity)")
    p.add_argument("--strict", action="store_true", help="score with the authors' strict format")
    p.add_argument("--tau-undefined", choices=TAU_UNDEFINED_MODES, default="minus_one")
    p.add_argument("--ray-address", default=None, help="attach to this Ray cluster (default: RAY_ADDRESS or start locally)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a locally started Ray (default: all)")
    p.set_defaults(func=run_eval)


def _check_args(args: argparse.Namespace) -> None:
    positive = {"--max-new-tokens": args.max_new_tokens, "--num-engines": args.num_engines,
                "--chunk-size": args.chunk_size, "--tensor-parallel-size": args.tensor_parallel_size}
    for flag, value in [*positive.items(), ("--k", args.k), ("--limit", args.limit), ("--max-model-len", args.max_model_len)]:
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    if not 0 < args.top_p <= 1 or args.temperature < 0:
        raise ValueError(f"need 0 < --top-p <= 1 and --temperature >= 0, got {args.top_p}, {args.temperature}")
    if args.prompt_format == "synthetic" and args.pairwise:
        raise ValueError("--prompt-format synthetic is for listwise evaluation only (no --pairwise)")
    if args.both_orders and not args.pairwise:
        raise ValueError("--both-orders needs --pairwise")
    if args.think_prefill and args.style != "think":
        raise ValueError("--think-prefill is only for --style think")


def checkpoint_dtype(model_path: str) -> str:
    """The dtype the checkpoint was saved in (vLLM's "auto" would pick bfloat16 on CPU for fp32)."""
    cfg = json.loads((Path(model_path) / "config.json").read_text(encoding="utf-8"))
    dtype = cfg.get("dtype") or cfg.get("torch_dtype") or (cfg.get("text_config") or {}).get("dtype")
    return str(dtype) if dtype else "auto"


def model_length_limit(model_path: str, requested: Optional[int]) -> int:
    """The prompt + response limit: ``requested`` or the config's, never above the config's."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(model_path)
    cfg = getattr(cfg, "text_config", None) or cfg
    limit = getattr(cfg, "max_position_embeddings", None)
    if requested is None:
        if not limit:
            raise ValueError(f"{model_path}/config.json has no max_position_embeddings; pass --max-model-len")
        return int(limit)
    if limit and requested > limit:
        raise ValueError(f"--max-model-len {requested} exceeds the model's max_position_embeddings {limit}")
    return requested


def generate_all(pool, plan: EvalPlan, args: argparse.Namespace, n: int) -> list:
    """Generate in chunks (progress bar on stderr); prompt indices become plan positions."""
    from tqdm import tqdm

    prompts, out = plan.prompts, []
    bar = tqdm(total=len(prompts), desc=f"generating (n={n})", unit="prompt", file=sys.stderr)
    tokens, start = 0, time.perf_counter()
    for c, first in enumerate(range(0, len(prompts), args.chunk_size)):
        chunk = prompts[first:first + args.chunk_size]
        gens = pool.generate([p.token_ids for p in chunk], n=n, temperature=args.temperature, top_p=args.top_p,
                             max_new_tokens=args.max_new_tokens, seed=args.seed + c)
        for g in gens:
            g.prompt_index += first
        out.extend(gens)
        tokens += sum(len(g.response_ids) for g in gens)
        bar.update(len(chunk))
        bar.set_postfix(tok_s=f"{tokens / (time.perf_counter() - start):.0f}")
    bar.close()
    return out


def score_file(lists, path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Exactly what ``aletheia-eval score`` computes for this predictions file."""
    from aletheia_ray.evaluation import load_predictions, score_predictions

    return score_predictions(lists, load_predictions(path), style=args.style, strict=args.strict,
                             tau_undefined=args.tau_undefined)


def run_eval(args: argparse.Namespace) -> int:
    from rich.console import Console
    from transformers import AutoTokenizer

    from aletheia_ray.data.lists import load_lists
    from aletheia_ray.models import resolve_model_path
    from aletheia_ray.launch.eval_score import _summary_tables

    _check_args(args)
    console = Console(file=sys.stderr)
    lists = load_lists(args.data)[: args.limit]
    if not lists:
        raise ValueError(f"{args.data}: no lists to evaluate")
    mode = "pair" if args.pairwise else "list"
    n = args.k or DEFAULT_K[mode]
    try:
        model_path = resolve_model_path(args.model)
    except NotImplementedError as exc:
        raise ValueError(str(exc)) from None
    limit = model_length_limit(model_path, args.max_model_len)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    try:
        plan = plan_eval_prompts(lists, tokenizer, mode=mode, style=args.style,
                                 max_prompt_tokens=limit - args.max_new_tokens, both_orders=args.both_orders,
                                 too_long=args.too_long, prefill=THINK_OPEN if args.think_prefill else "",
                                 prompt_format=args.prompt_format)
    except EvalPlanError as exc:
        raise EvalPlanError(f"{args.data}: {exc} [CLI: --max-model-len, --max-new-tokens, --too-long skip]") from None
    if plan.too_long:
        console.print(f"[yellow]skipping {len(plan.skipped_lists)} list(s) whose prompts exceed "
                      f"{plan.max_prompt_tokens} tokens: {plan.skipped_lists[:10]} (all listed in metrics.json)")
    if not plan.prompts:
        raise ValueError(f"every list of {args.data} was too long for max_model_len {limit} - max_new_tokens "
                         f"{args.max_new_tokens}; nothing to generate")
    engine_len = min(limit, plan.longest_prompt + args.max_new_tokens)
    dtype = args.dtype or checkpoint_dtype(model_path)

    from aletheia_ray.actors.cluster import ray_session
    from aletheia_ray.actors.rollout import RolloutPool

    with ray_session(args.ray_address, args.num_cpus or os.cpu_count(), prefix="aletheia_eval_ray_"):
        t0 = time.perf_counter()
        pool = RolloutPool(args.num_engines, model_path, num_cpus_per_engine=args.num_cpus_per_engine,
                           num_gpus_per_engine=args.num_gpus_per_engine,
                           tensor_parallel_size=args.tensor_parallel_size, dtype=dtype,
                           max_model_len=engine_len, kv_cache_gb=args.kv_cache_gb,
                           enforce_eager=args.enforce_eager, seed=args.seed,
                           num_threads_per_engine=args.num_threads_per_engine)
        engine_start = time.perf_counter() - t0
        try:
            t0 = time.perf_counter()
            generations = generate_all(pool, plan, args, n)
            gen_seconds = time.perf_counter() - t0
        finally:
            pool.shutdown()

    rows = prediction_rows(plan.prompts, generations, n)
    forward, reverse = split_pair_orders(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    pred_path = write_jsonl(forward, args.out / "predictions.jsonl")
    metrics = {"data": str(args.data), "predictions": str(pred_path), **score_file(lists, pred_path, args)}
    if reverse:
        rev_path = write_jsonl(reverse, args.out / "predictions_reversed.jsonl")
        metrics["reversed_order"] = {"predictions": str(rev_path), **score_file(lists, rev_path, args)}
    if mode == "pair":
        metrics["position_bias"] = position_bias(rows, style=args.style, strict=args.strict)
    metrics["prompts"] = plan.report()
    metrics["generation"] = {**generation_stats(generations, gen_seconds), "samples_per_prompt": n,
                             "timing_s/engine_start": engine_start, "max_model_len": engine_len,
                             "dtype": dtype}
    metrics["run"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"}
    metrics["run"]["model_path"] = model_path
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")

    out = Console(file=sys.stdout)
    for table in _summary_tables(metrics):
        out.print(table)
    g = metrics["generation"]
    out.print(f"generated {g['n_generations']} samples in {g['timing_s/gen']:.1f} s "
              f"({g['perf/throughput']:.0f} tok/s, mean length {g['response_length/mean']:.0f}, "
              f"clip ratio {g['response_length/clip_ratio']:.2f}); wrote {pred_path} and {args.out / 'metrics.json'}")
    return 0
