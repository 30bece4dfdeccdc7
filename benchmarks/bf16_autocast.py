"""bf16 autocast vs fp32 on this CPU for the learner's logprob pass: fwd+bwd and no-grad time, and the logprob error it costs.

For each model (the 4M tiny bench Qwen2 and ``embedded:tiny``, both fp32 weights) this builds one
batch like a GRPO micro-batch: ``--rows`` rows of ``--prompt`` prompt + ``--response`` response
tokens (random ids, no padding), scored on the response positions. It times, alternating
(fp32, bf16, fp32, bf16 ...) after one untimed warm-up of each:

* ``fwd+bwd``: ``scored_logprobs(model, ids, mask, scored, with_entropy=True)`` with gradients,
  ``logprobs.sum().backward()`` (the learner's pass; autocast wraps the forward only, the
  backward runs outside it as PyTorch recommends);
* ``no-grad``: the same call under ``torch.no_grad()`` (reference / old-logprob pass).

bf16 = ``torch.autocast("cpu", dtype=torch.bfloat16)`` around the forward; weights stay fp32.
Accuracy: max and mean |logprob_bf16 - logprob_fp32| over the response tokens (no-grad pass), the
same for the entropy, and cosine / relative L2 error of the parameter gradient of sum(logprobs).

    flock /tmp/aletheia-heavy.lock python -m benchmarks.bf16_autocast [--reps 5] [--threads 2] [--json OUT]
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time

from rich.console import Console

from benchmarks._common import REPO, alternate, fmt, machine_header, print_table, ratio, summary, write_json

TINY = REPO.parent / "shared" / "models" / "tiny-qwen2-bench"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load(spec: str, cache_dir: str):
    import torch
    from transformers import AutoModelForCausalLM

    from aletheia_ray.models import resolve_model_path

    path = resolve_model_path(spec, cache_dir=cache_dir) if spec.startswith("embedded:") else spec
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    return model.eval()


def make_batch(vocab: int, rows: int, prompt: int, response: int, seed: int = 0):
    import torch

    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (rows, prompt + response), generator=gen)
    mask = torch.ones_like(ids)
    scored = torch.zeros(rows, prompt + response - 1, dtype=torch.long)
    scored[:, prompt - 1:] = 1  # position t predicts ids[:, t+1]: the response tokens
    return ids, mask, scored


def amp(bf16: bool):
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def fwd_bwd(model, batch, bf16: bool):
    from aletheia_ray.algorithms.logprobs import scored_logprobs

    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    with amp(bf16):
        lp, _ = scored_logprobs(model, *batch, with_entropy=True)
    lp.sum().backward()
    return time.perf_counter() - start


def no_grad(model, batch, bf16: bool):
    import torch

    from aletheia_ray.algorithms.logprobs import scored_logprobs

    start = time.perf_counter()
    with torch.no_grad(), amp(bf16):
        lp, ent = scored_logprobs(model, *batch, with_entropy=True)
    return time.perf_counter() - start, lp, ent


def grads(model, batch, bf16: bool):
    import torch

    fwd_bwd(model, batch, bf16)
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def accuracy(model, batch) -> dict:
    scored = batch[2].bool()
    _, lp32, ent32 = no_grad(model, batch, False)
    _, lp16, ent16 = no_grad(model, batch, True)
    dlp, dent = (lp16 - lp32)[scored].abs(), (ent16 - ent32)[scored].abs()
    g32, g16 = grads(model, batch, False).double(), grads(model, batch, True).double()
    return {"logprob_abs_max": dlp.max().item(), "logprob_abs_mean": dlp.mean().item(),
            "logprob_fp32_mean": lp32[scored].mean().item(),
            "seq_logprob_abs_max": ((lp16 - lp32) * scored).sum(-1).abs().max().item(),
            "entropy_abs_max": dent.max().item(), "entropy_abs_mean": dent.mean().item(),
            "grad_cosine": (g32 @ g16 / (g32.norm() * g16.norm())).item(),
            "grad_rel_l2": ((g16 - g32).norm() / g32.norm()).item()}


def bench_model(name: str, spec: str, args) -> dict:
    model = load(spec, args.cache_dir)
    params = sum(p.numel() for p in model.parameters())
    batch = make_batch(model.config.vocab_size, args.rows, args.prompt, args.response)
    log(f"{name}: {params / 1e6:.2f}M params, batch {tuple(batch[0].shape)}; warm-up")
    for bf16 in (False, True):
        fwd_bwd(model, batch, bf16)
        no_grad(model, batch, bf16)
    systems = {"fwd+bwd fp32": lambda rep: fwd_bwd(model, batch, False),
               "fwd+bwd bf16": lambda rep: fwd_bwd(model, batch, True),
               "no-grad fp32": lambda rep: no_grad(model, batch, False)[0],
               "no-grad bf16": lambda rep: no_grad(model, batch, True)[0]}
    times = alternate(systems, args.reps, log=lambda s: log(f"{name} {s}"))
    stats = {k: summary(v) for k, v in times.items()}
    acc = accuracy(model, batch)
    return {"model": name, "params": params, "times_s": times, "stats": stats, "accuracy": acc}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--prompt", type=int, default=78)
    parser.add_argument("--response", type=int, default=64)
    parser.add_argument("--models", default="tiny-qwen2-bench,embedded:tiny",
                        help="comma list of tiny-qwen2-bench, embedded:tiny[?...] or an HF dir")
    parser.add_argument("--cache-dir", default="/tmp/bf16cache")
    parser.add_argument("--json", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    header = machine_header()
    header.update(threads=torch.get_num_threads(), cpu_capability=torch.backends.cpu.get_cpu_capability(),
                  mkldnn_bf16=torch.ops.mkldnn._is_mkldnn_bf16_supported())
    results = []
    for spec in [s for s in args.models.split(",") if s]:
        path = str(TINY) if spec == "tiny-qwen2-bench" else spec
        results.append(bench_model(spec, path, args))

    rows = []
    for r in results:
        s = r["stats"]
        for mode in ("fwd+bwd", "no-grad"):
            f32, b16 = s[f"{mode} fp32"], s[f"{mode} bf16"]
            rows.append([r["model"], mode, fmt(f32, 3), fmt(b16, 3), ratio(f32["median"], b16["median"])])
    acc_rows = [[r["model"], f"{r['accuracy']['logprob_abs_max']:.4f}", f"{r['accuracy']['logprob_abs_mean']:.5f}",
                 f"{r['accuracy']['seq_logprob_abs_max']:.3f}", f"{r['accuracy']['entropy_abs_max']:.4f}",
                 f"{r['accuracy']['grad_cosine']:.5f}", f"{r['accuracy']['grad_rel_l2']:.4f}"] for r in results]
    con = Console() if sys.stdout.isatty() else Console(width=150)
    title = (f"bf16 autocast vs fp32: {args.rows} rows x ({args.prompt}+{args.response}) tokens, "
             f"{args.threads} threads, seconds median (min-max) of {args.reps}; speedup = fp32/bf16")
    md = print_table(title, ["model", "pass", "fp32 s", "bf16 autocast s", "speedup"], rows, header, con)
    md_acc = print_table("bf16 - fp32 over response tokens (no-grad logprobs/entropy; grad of sum(logprobs))",
                         ["model", "|dlogprob| max", "|dlogprob| mean", "|d seq logprob| max", "|dentropy| max",
                          "grad cosine", "grad rel L2"], acc_rows, console=con)
    write_json(args.json, {"header": header, "args": vars(args), "results": results,
                           "markdown": md + "\n\n" + md_acc})
    return 0


if __name__ == "__main__":
    sys.exit(main())
