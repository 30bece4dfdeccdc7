"""Generation throughput of our vLLM rollout pool vs HF transformers ``generate``: same model, prompts, samples and sampling settings.

Workload: the synthetic verifier task's prompts (``make_synthetic_lists(num_candidates=(2, 3),
seed=0)`` rendered with the model's chat template as the trainer does: 67 or 89 tokens, ~78 on
average), the same token ids on both sides (HF left-padded), ``n`` samples per prompt, T=1.0,
top_p=1.0 (HF ``top_k=0``: full vocabulary, like vLLM), fp32, ``--max-new-tokens`` (64) new tokens.
The default model (``../shared/models/tiny-qwen2-bench``) never emits EOS, so both sides generate
exactly ``sequences x max_new_tokens`` tokens; the script counts and prints them.

Systems: HF ``model.generate`` in this process (torch threads = the machine's cores) and
``RolloutPool`` (``aletheia_ray.actors.rollout``) as the controller uses it (enforce_eager, seeded
sampling, driver-side ``pool.generate`` wall time incl. Ray calls). Engine scaling on the largest
batch: 1 engine with every core, 1 engine with 1 thread, 2 engines with half the cores each, and
the 1-engine pool unseeded. Engines start (and warm up) before timing; every repetition runs every
system once, alternating, on a Ray of ``cores`` CPUs: engines only reserve 0.25 CPU each (they
never compute at the same time), their thread count is ``num_threads_per_engine``.

    flock /tmp/aletheia-heavy.lock aletheia-bench rollout_vs_hf [--reps 4] [--batches 8x1,8x8,16x8] [--json OUT]
"""
from __future__ import annotations

import argparse
import inspect
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from rich.console import Console

from benchmarks._common import REPO, alternate, fmt, machine_header, print_table, ratio, summary, write_json

DEFAULT_MODEL = REPO.parent / "shared" / "models" / "tiny-qwen2-bench"
ENGINE_CPUS = 0.25  # Ray bookkeeping only: the engines' compute is set by their thread budget


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_batches(text: str) -> list[tuple[int, int]]:
    """``"8x1,8x8"`` -> [(8, 1), (8, 8)] (prompts x samples per prompt)."""
    out = []
    for part in text.split(","):
        prompts, _, samples = part.strip().partition("x")
        out.append((int(prompts), int(samples or 1)))
    if not out or any(p < 1 or s < 1 for p, s in out):
        raise SystemExit(f"--batches: need PROMPTSxSAMPLES items, got {text!r}")
    return out


def build_prompts(model: str, count: int) -> list[list[int]]:
    """``count`` synthetic-task prompts as the trainer renders them (chat template, no extra specials)."""
    from transformers import AutoTokenizer

    from aletheia_ray.data.synthetic import make_synthetic_lists
    from aletheia_ray.tasks.verifier_lists import verifier_prompt_ids

    tok = AutoTokenizer.from_pretrained(model)
    lists = make_synthetic_lists(count, num_candidates=(2, 3), seed=0)
    return [verifier_prompt_ids(lst, tok, style="instruct", synthetic=True) for lst in lists]


class HFGenerate:
    """HF ``generate`` in this process on left-padded prompts; returns generated token counts."""

    def __init__(self, model: str, threads: int):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32,
                                                          attn_implementation="sdpa").eval()
        tok = AutoTokenizer.from_pretrained(model)
        self.pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.eos = tok.eos_token_id

    def __call__(self, prompts: list[list[int]], n: int, max_new_tokens: int, seed: int) -> int:
        torch = self.torch
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[self.pad] * (width - len(p)) + p for p in prompts])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0,
                                      top_p=1.0, top_k=0, num_return_sequences=n, max_new_tokens=max_new_tokens,
                                      pad_token_id=self.pad, eos_token_id=self.eos)
        gen = out[:, width:]
        tokens = 0
        for row in gen.tolist():  # up to and including the first EOS; the rest is padding
            tokens += row.index(self.eos) + 1 if self.eos in row else len(row)
        return tokens


def make_pool(model: str, engines: int, threads: int, args, notes: list[str]):
    """A RolloutPool with ``engines`` engines of ``threads`` threads each (the trainer's engine settings)."""
    from aletheia_ray.actors.rollout import RolloutPool

    kwargs = dict(num_cpus_per_engine=ENGINE_CPUS, max_model_len=args.max_model_len, kv_cache_gb=args.kv_cache_gb,
                  enforce_eager=not args.compiled, seed=0)
    if "num_threads_per_engine" in inspect.signature(RolloutPool).parameters:
        kwargs["num_threads_per_engine"] = threads
    else:  # older RolloutPool: threads follow the CPUs Ray gives the actor
        kwargs["num_cpus_per_engine"] = threads
        notes.append("RolloutPool has no num_threads_per_engine: engine threads = the engine's Ray CPUs")
    start = time.perf_counter()
    pool = RolloutPool(engines, model, **kwargs)
    log(f"  pool {engines} engine(s) x {threads} thread(s) ready in {time.perf_counter() - start:.1f}s: "
        f"{[{k: i.get(k) for k in ('start_time_s', 'num_threads', 'torch_threads') if k in i} for i in pool.engine_info]}")
    return pool


def vllm_call(pool, prompts, n, max_new_tokens, seed):
    gens = pool.generate(prompts, n=n, temperature=1.0, top_p=1.0, max_new_tokens=max_new_tokens, seed=seed)
    if len(gens) != len(prompts) * n:
        raise RuntimeError(f"vLLM returned {len(gens)} samples for {len(prompts)} prompts x {n}")
    return sum(len(g.response_ids) for g in gens)


def timed(fn, *a) -> dict:
    start = time.perf_counter()
    tokens = fn(*a)
    seconds = time.perf_counter() - start
    return {"tokens": tokens, "seconds": seconds, "tok_s": tokens / seconds}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--batches", default="8x1,8x8,16x8", help="PROMPTSxSAMPLES,... (the last is the scaling batch)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--reps", type=int, default=4)
    p.add_argument("--max-model-len", type=int, default=512)
    p.add_argument("--kv-cache-gb", type=int, default=1)
    p.add_argument("--no-scaling", action="store_true", help="skip the 1-thread and 2-engine pools")
    p.add_argument("--compiled", action="store_true", help="engines with enforce_eager=False (the trainer uses True)")
    p.add_argument("--quick", action="store_true", help="smoke run: batches 8x1,8x8, 1 repetition")
    p.add_argument("--json", metavar="OUT", help="write the results as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.batches, args.reps = "8x1,8x8", 1
    batches = parse_batches(args.batches)
    cores = len(os.sched_getaffinity(0))
    header = machine_header()
    notes: list[str] = []
    prompts_all = build_prompts(args.model, max(b for b, _ in batches))
    lengths = [len(p) for p in prompts_all]
    log(f"prompts: {len(prompts_all)} synthetic-task prompts, {min(lengths)}-{max(lengths)} tokens "
        f"(mean {sum(lengths) / len(lengths):.1f}); model {args.model}; {cores} cores")

    import ray

    from aletheia_ray.actors.cluster import ray_session

    hf = HFGenerate(args.model, cores)
    big = batches[-1]
    with ray_session(num_cpus=cores, temp_dir=tempfile.mkdtemp(prefix="bray_rvh", dir="/tmp"),
                     log_to_driver=False):
        specs = {"1 engine": (1, cores)}
        if not args.no_scaling:
            specs.update({"1 engine, 1 thread": (1, 1), "2 engines": (2, max(1, cores // 2))})
        with ThreadPoolExecutor(len(specs)) as ex:  # engine start-up is not timed
            futures = {name: ex.submit(make_pool, args.model, e, t, args, notes) for name, (e, t) in specs.items()}
            pools = {name: f.result() for name, f in futures.items()}
        engine_info = {name: pool.engine_info for name, pool in pools.items()}
        try:
            warm = prompts_all[:2]
            log("warm-up: 2 prompts x 2 samples on every system")
            hf(warm, 2, args.max_new_tokens, 0)
            for pool in pools.values():
                vllm_call(pool, warm, 2, args.max_new_tokens, 0)
            systems = {}
            for b, n in batches:
                prompts = prompts_all[:b]
                systems[f"hf {b}x{n}"] = lambda rep, pr=prompts, n=n: timed(hf, pr, n, args.max_new_tokens, rep + 1)
                systems[f"1 engine {b}x{n}"] = lambda rep, pr=prompts, n=n: timed(
                    vllm_call, pools["1 engine"], pr, n, args.max_new_tokens, rep + 1)
            big_prompts = prompts_all[:big[0]]
            for name in pools:
                if name != "1 engine":
                    systems[f"{name} {big[0]}x{big[1]}"] = lambda rep, pool=pools[name]: timed(
                        vllm_call, pool, big_prompts, big[1], args.max_new_tokens, rep + 1)
            if not args.no_scaling:
                systems[f"1 engine unseeded {big[0]}x{big[1]}"] = lambda rep: timed(
                    vllm_call, pools["1 engine"], big_prompts, big[1], args.max_new_tokens, None)
            results = alternate(systems, args.reps)
        finally:
            for pool in pools.values():
                pool.shutdown()
        ray.shutdown()
    return report(args, batches, results, header, notes, engine_info, lengths, cores)


def report(args, batches, results, header, notes, engine_info, lengths, cores) -> int:
    stats = {name: {"tok_s": summary(r["tok_s"] for r in runs), "seconds": summary(r["seconds"] for r in runs),
                    "tokens": sorted({r["tokens"] for r in runs})}
             for name, runs in results.items()}
    con = Console() if sys.stdout.isatty() else Console(width=170)  # captured output: no wrapping
    mismatch = []
    rows = []
    for b, n in batches:
        h, v = stats[f"hf {b}x{n}"], stats[f"1 engine {b}x{n}"]
        expected = b * n * args.max_new_tokens
        if h["tokens"] != v["tokens"]:
            mismatch.append(f"{b}x{n}: HF {h['tokens']} vs vLLM {v['tokens']} tokens")
        rows.append([f"{b} x {n} = {b * n}", "/".join(map(str, h["tokens"])), "/".join(map(str, v["tokens"])),
                     fmt(h["tok_s"], 0), fmt(v["tok_s"], 0), ratio(v["tok_s"]["median"], h["tok_s"]["median"]),
                     fmt(h["seconds"]), fmt(v["seconds"])])
        log(f"tokens {b}x{n}: HF {h['tokens']} vLLM {v['tokens']} (expected {expected} if no EOS)")
    mean_len = sum(lengths) / len(lengths)
    title = (f"generation: HF generate vs vLLM RolloutPool (1 engine, {cores} threads), {args.max_new_tokens} new "
             f"tokens, T=1 top_p=1, fp32, prompts {min(lengths)}-{max(lengths)} tok (mean {mean_len:.0f}), "
             f"median (min-max) of {args.reps}")
    columns = ["prompts x samples = seqs", "HF tokens", "vLLM tokens", "HF tok/s", "vLLM tok/s", "vLLM/HF",
               "HF s", "vLLM s"]
    tables = [{"title": title, "columns": columns, "rows": rows,
               "markdown": print_table(title, columns, rows, header=header, console=con)}]
    b, n = batches[-1]
    key = f"{b}x{n}"
    scale_rows = []
    base = stats[f"1 engine {key}"]["tok_s"]["median"]
    hf_med = stats[f"hf {key}"]["tok_s"]["median"]
    labels = {f"hf {key}": f"HF generate (driver, {cores} threads)",
              f"1 engine {key}": f"1 engine x {cores} threads (seeded, as the trainer)",
              f"1 engine, 1 thread {key}": "1 engine x 1 thread",
              f"2 engines {key}": f"2 engines x {max(1, cores // 2)} thread(s), prompts split",
              f"1 engine unseeded {key}": f"1 engine x {cores} threads, unseeded sampling"}
    for name, label in labels.items():
        if name in stats:
            s = stats[name]
            scale_rows.append([label, "/".join(map(str, s["tokens"])), fmt(s["tok_s"], 0), fmt(s["seconds"]),
                               ratio(s["tok_s"]["median"], base), ratio(s["tok_s"]["median"], hf_med)])
    if len(scale_rows) > 2:
        title2 = f"engine scaling on {b} x {n} = {b * n} sequences, {args.max_new_tokens} new tokens"
        columns2 = ["system", "tokens", "tok/s", "s", "vs 1 engine", "vs HF"]
        tables.append({"title": title2, "columns": columns2, "rows": scale_rows,
                       "markdown": print_table(title2, columns2, scale_rows, console=con)})
    if mismatch:
        notes.append("token counts differ (the model emitted EOS?): " + "; ".join(mismatch))
    notes.append(f"engines: {'enforce_eager=False (compiled)' if args.compiled else 'enforce_eager=True (trainer default)'}, "
                 f"kv_cache_gb={args.kv_cache_gb}, max_model_len={args.max_model_len}, chunked prefill off")
    for note in notes:
        print(f"note: {note}")
    argv = " ".join(sys.argv[1:])
    write_json(args.json, {"benchmark": "rollout_vs_hf", "summary": __doc__.split("\n\n")[0], "header": header,
                           "command": f"flock /tmp/aletheia-heavy.lock aletheia-bench rollout_vs_hf {argv}".strip(),
                           "tables": tables, "notes": notes, "results": results, "stats": stats,
                           "engine_info": engine_info, "prompt_lengths": lengths,
                           "settings": {k: v for k, v in vars(args).items() if k != "json"}})
    return 1 if mismatch else 0


if __name__ == "__main__":
    sys.exit(main())
