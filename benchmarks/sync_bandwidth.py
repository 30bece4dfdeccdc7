"""Weight-sync throughput learner rank 0 -> rollout engine(s) per transport and bucket size, against memcpy of the same bytes, and sync's share of a training step.

For each model (the tiny bench model, ~20 MB synced, and a random-init Qwen2 of ~200 MB built at
run time in a temp dir with the tiny model's tokenizer) this starts a real ``LearnerGroup`` (1
DeepSpeed ZeRO-2 rank) and ``RolloutPool`` as ``Controller.start`` does (0.5 CPU each, the
trainer's thread budgets) and times ``WeightSync(transport, bucket_mb, backend="gloo").sync`` for
``object_store`` and ``collective`` at each bucket size, alternating, after one untimed warm-up
sync per transport (it opens the collective group). MB/s counts the payload (``sync/bytes``);
%-of-memcpy is against ``numpy.copyto`` of that many bytes into a warm buffer (one core, the bound
for one copy). ``WeightSync`` reports only the total, so the object_store path is also run in its
two stages (the same actor calls ``sync`` makes): pack + ``ray.put`` on the learner, then
``ray.get`` + ``reload_weights`` + prefix-cache reset in the engine; packing alone is timed in
this process with the learner's code (``iter_packed_buckets``) and thread count.

Sync's share of the step: median ``timing_s/sync`` / ``timing_s/step`` of a run's ``metrics.jsonl``
(``--run-dir``), by default of a short ``configs/debug_cpu.yaml`` run started after the
measurements (``--skip-demo-share`` to skip).

    flock /tmp/aletheia-heavy.lock aletheia-bench sync_bandwidth [--reps 5] [--buckets 16,64,256] [--json OUT]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rich.console import Console

from benchmarks._common import REPO, alternate, fmt, machine_header, print_table, summary, write_json

TINY = REPO.parent / "shared" / "models" / "tiny-qwen2-bench"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")
TRANSPORTS = ("object_store", "collective")
MB = 2**20


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def console() -> Console:
    return Console() if sys.stdout.isatty() else Console(width=170)


def build_big_model(out: Path, tokenizer_from: Path, hidden: int, layers: int) -> Path:
    """A random-init Qwen2 (head size 64, tied embeddings, fp32) with the tiny model's tokenizer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=4096, hidden_size=hidden, intermediate_size=int(hidden * 2.75) // 64 * 64,
                      num_hidden_layers=layers, num_attention_heads=hidden // 64, num_key_value_heads=max(1, hidden // 256),
                      head_dim=64, max_position_embeddings=2048, tie_word_embeddings=True, eos_token_id=2,
                      pad_token_id=0, bos_token_id=None)
    model = Qwen2ForCausalLM(cfg).to(torch.float32)
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:
        if (tokenizer_from / name).exists():
            shutil.copy(tokenizer_from / name, out / name)
    return out


def memcpy_rates(nbytes: int, reps: int, cores: int) -> dict[str, dict]:
    """MB/s of one copy of ``nbytes`` into a warm buffer: numpy (memcpy), torch copy_ with 1 and all threads."""
    import numpy as np
    import torch

    src = np.random.default_rng(0).integers(0, 255, nbytes, dtype=np.uint8)
    dst = np.empty_like(src)
    tsrc, tdst = torch.from_numpy(src), torch.from_numpy(dst)
    out = {}
    for name, threads, copy in (("numpy copyto", 1, lambda: np.copyto(dst, src)),
                                ("torch copy_, 1 thread", 1, lambda: tdst.copy_(tsrc)),
                                (f"torch copy_, {cores} threads", cores, lambda: tdst.copy_(tsrc))):
        torch.set_num_threads(threads)
        copy()  # warm
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            copy()
            times.append(time.perf_counter() - start)
        out[name] = summary(nbytes / MB / t for t in times)
    return out


def pack_rate(model_path: str, bucket_mb: float, reps: int, threads: int) -> dict:
    """MB/s of the learner's packing code on this model's state dict (``threads`` torch threads)."""
    import torch
    from transformers import AutoModelForCausalLM

    from aletheia_ray.sync.buckets import iter_packed_buckets

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    named = [(n, t.detach()) for n, t in model.state_dict().items()]
    nbytes = sum(t.numel() * t.element_size() for _, t in named)
    rates = []
    for _ in range(reps + 1):
        start = time.perf_counter()
        for _spec, _flat in iter_packed_buckets(named, int(bucket_mb * MB), "cpu"):
            pass
        rates.append(nbytes / MB / (time.perf_counter() - start))
    return summary(rates[1:])


def measure_model(label: str, path: str, args, cores: int) -> dict:
    """Start learner + rollout for ``path``, run the alternating syncs, shut both down."""
    import ray

    from aletheia_ray.actors.learner import LearnerGroup
    from aletheia_ray.actors.rollout import RolloutPool
    from aletheia_ray.actors.weight_sync.transports import WeightSync

    start = time.perf_counter()
    with ThreadPoolExecutor(2) as ex:  # as Controller.start: both at once
        rollout_f = ex.submit(RolloutPool, args.engines, path, num_cpus_per_engine=0.5, max_model_len=512,
                              kv_cache_gb=1, enforce_eager=True, seed=0)
        learner_f = ex.submit(LearnerGroup, 1, path, num_cpus_per_rank=0.5, lr=1e-5, micro_batch_size=1,
                              dtype="float32", backend="gloo", seed=0)
        pool, learner = rollout_f.result(), learner_f.result()
    log(f"[{label}] learner + {args.engines} engine(s) ready in {time.perf_counter() - start:.1f}s")
    sender, engines = learner.ranks[0], list(pool.engines)
    syncs = {t: WeightSync(t, args.buckets[0], args.timeout_s, backend="gloo") for t in args.transports}
    try:
        for t, ws in syncs.items():
            m = ws.sync(learner, pool)
            log(f"[{label}] warm-up {t}: {m['timing_s/sync']:.2f}s, {m['sync/bytes'] / MB:.1f} MB")

        def sync_call(t, mb):
            def run(_rep):
                syncs[t].bucket_bytes = int(mb * MB)  # one WeightSync (one collective group) per transport
                return syncs[t].sync(learner, pool)
            return run

        def staged_call(mb):
            def run(_rep):
                t0 = time.perf_counter()
                specs, refs = ray.get(sender.weight_sync_put_buckets.remote(int(mb * MB)), timeout=args.timeout_s)
                t1 = time.perf_counter()
                ray.get([e.load_weights_from_object_refs.remote(specs, refs) for e in engines], timeout=args.timeout_s)
                t2 = time.perf_counter()
                return {"pack_put_s": t1 - t0, "load_s": t2 - t1, "buckets": len(specs)}
            return run

        systems = {f"{t} {mb:g}": sync_call(t, mb) for mb in args.buckets for t in args.transports}
        if "object_store" in args.transports:
            systems.update({f"stages {mb:g}": staged_call(mb) for mb in args.buckets})
        results = alternate(systems, args.reps, log=lambda s: log(f"[{label}] {s}"))
    finally:
        for ws in syncs.values():
            try:
                ws.close(learner, pool)
            except Exception as exc:  # noqa: BLE001 - shutting down anyway
                log(f"[{label}] close: {exc}")
        pool.shutdown()
        learner.shutdown()
    return results


def demo_share(args) -> dict:
    """Per-step timing_s/sync and timing_s/step of a run dir (or of a short demo run)."""
    from aletheia_ray.tracking import read_metrics

    if args.run_dir:
        rows, source = read_metrics(args.run_dir), args.run_dir
    else:
        from benchmarks.sync_modes import run_train

        overrides = ["trainer.total_steps=4", "cold_start.steps=2", "trainer.save_steps=0", "trainer.save_final=false",
                     "logging.wandb=disabled", "logging.progress=false"]
        root = Path(tempfile.mkdtemp(prefix="bench_sync_share_"))
        rows = run_train("debug_cpu", overrides, root, REPO / "configs" / "debug_cpu.yaml")
        source = f"aletheia-train --config configs/debug_cpu.yaml {' '.join(overrides)} (output under {root})"
    rows = [r for r in rows if "timing_s/sync" in r and "timing_s/step" in r]
    if not rows:
        raise SystemExit(f"no steps with timing_s/sync and timing_s/step in {source}")
    return {"source": source, "steps": len(rows), "sync_s": [r["timing_s/sync"] for r in rows],
            "step_s": [r["timing_s/step"] for r in rows], "mb_per_s": [r.get("sync/mb_per_s") for r in rows],
            "bytes": rows[0].get("sync/bytes")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="tiny,big", help="tiny,big (big: random-init Qwen2 built at run time)")
    p.add_argument("--tiny-model", default=str(TINY))
    p.add_argument("--big-hidden", type=int, default=1024)
    p.add_argument("--big-layers", type=int, default=4)
    p.add_argument("--buckets", default="16,64,256", help="bucket sizes in MB")
    p.add_argument("--transports", default=",".join(TRANSPORTS))
    p.add_argument("--engines", type=int, default=1)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--timeout-s", type=float, default=300)
    p.add_argument("--run-dir", help="an aletheia-train output dir: sync's share of its steps")
    p.add_argument("--skip-demo-share", action="store_true", help="no demo run when --run-dir is not given")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny model, buckets 16,64, 1 repetition, no demo")
    p.add_argument("--json", metavar="OUT", help="write the results as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.buckets, args.reps, args.skip_demo_share = "tiny", "16,64", 1, True
    args.buckets = [float(b) for b in args.buckets.split(",") if b]
    args.transports = [t for t in args.transports.split(",") if t]
    if set(args.transports) - set(TRANSPORTS) or not args.buckets or args.reps < 1:
        raise SystemExit(f"--transports from {TRANSPORTS}, --buckets non-empty, --reps >= 1")
    cores = len(os.sched_getaffinity(0))
    header = machine_header()
    tmp = Path(tempfile.mkdtemp(prefix="bench_sync_bw_"))
    models = {}
    for name in [m for m in args.models.split(",") if m]:
        if name == "tiny":
            models["tiny"] = args.tiny_model
        elif name == "big":
            log(f"building a random-init Qwen2 (hidden {args.big_hidden}, {args.big_layers} layers) in {tmp}")
            models["big"] = str(build_big_model(tmp / "big", Path(args.tiny_model), args.big_hidden, args.big_layers))
        else:
            raise SystemExit(f"--models: unknown {name!r} (tiny, big)")

    from aletheia_ray.actors.cluster import ray_session
    from aletheia_ray.threads import thread_budget

    learner_threads = thread_budget(0.5)
    raw, copies, packs = {}, {}, {}
    try:
        for label, path in models.items():
            with ray_session(num_cpus=cores, temp_dir=tempfile.mkdtemp(prefix="bray_sbw", dir="/tmp"),
                             log_to_driver=False):
                raw[label] = measure_model(label, path, args, cores)
            nbytes = int(raw[label][f"{args.transports[0]} {args.buckets[0]:g}"][0]["sync/bytes"])
            log(f"[{label}] memcpy and pack of {nbytes / MB:.1f} MB in this process")
            copies[label] = {"nbytes": nbytes, **memcpy_rates(nbytes, max(3, args.reps), cores)}
            packs[label] = {f"{mb:g}": pack_rate(path, mb, max(2, args.reps), learner_threads) for mb in args.buckets}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    share = None
    if args.run_dir or not args.skip_demo_share:
        share = demo_share(args)
    return report(args, header, raw, copies, packs, share, cores, learner_threads)


def report(args, header, raw, copies, packs, share, cores, learner_threads) -> int:
    con = console()
    tables = []
    rows = []
    for label, results in raw.items():
        mem = copies[label]["numpy copyto"]["median"]
        for mb in args.buckets:
            for t in args.transports:
                runs = results[f"{t} {mb:g}"]
                sec = summary(r["timing_s/sync"] for r in runs)
                rate = summary(r["sync/bytes"] / MB / r["timing_s/sync"] for r in runs)
                rows.append([label, f"{runs[0]['sync/bytes'] / MB:.1f}", t, f"{mb:g}", int(runs[0]["sync/buckets"]),
                             fmt(sec, 3), fmt(rate, 0), f"{100 * rate['median'] / mem:.1f}%"])
    title = (f"weight sync learner rank 0 -> {args.engines} vLLM engine(s) (WeightSync.sync, gloo), "
             f"median (min-max) of {args.reps}; %-of-memcpy vs one numpy copy of the same bytes")
    cols = ["model", "MB", "transport", "bucket MB", "buckets", "sync s", "MB/s", "% of memcpy"]
    tables.append({"title": title, "columns": cols, "rows": rows,
                   "markdown": print_table(title, cols, rows, header=header, console=con)})
    if "object_store" in args.transports:
        rows = []
        for label, results in raw.items():
            nbytes = copies[label]["nbytes"]
            for mb in args.buckets:
                st = results[f"stages {mb:g}"]
                pp, ld = summary(r["pack_put_s"] for r in st), summary(r["load_s"] for r in st)
                pack_s = nbytes / MB / packs[label][f"{mb:g}"]["median"]
                sync_med = summary(r["timing_s/sync"] for r in results[f"object_store {mb:g}"])["median"]
                rows.append([label, f"{mb:g}", f"{pack_s:.3f}", fmt(pp, 3), f"{max(0.0, pp['median'] - pack_s):.3f}",
                             fmt(ld, 3), f"{pp['median'] + ld['median']:.3f}", f"{sync_med:.3f}"])
        title = ("object_store sync in stages (s): pack (this process, the learner's code, "
                 f"{learner_threads} thread) | pack+put (learner) | put = difference | get+reload+cache reset (engine)")
        cols = ["model", "bucket MB", "pack", "pack+put", "put (derived)", "get+reload", "stages sum", "sync (table 1)"]
        tables.append({"title": title, "columns": cols, "rows": rows,
                       "markdown": print_table(title, cols, rows, console=con)})
    rows = []
    for label, c in copies.items():
        pk = " / ".join(f"{mb}: {fmt(s, 0)}" for mb, s in packs[label].items())
        rows.append([label, f"{c['nbytes'] / MB:.1f}", *(fmt(c[k], 0) for k in c if k != "nbytes"), pk])
    names = [k for k in next(iter(copies.values())) if k != "nbytes"] if copies else []
    cols = ["model", "MB", *(f"{k} MB/s" for k in names), f"pack MB/s by bucket MB ({learner_threads} thread)"]
    title = "copy bounds in one process: warm destination buffer; pack = iter_packed_buckets (fresh buffers)"
    tables.append({"title": title, "columns": cols, "rows": rows, "markdown": print_table(title, cols, rows, console=con)})
    share_out = None
    if share is not None:
        ratios = [s / t for s, t in zip(share["sync_s"], share["step_s"])]
        sync_m, step_m = statistics.median(share["sync_s"]), statistics.median(share["step_s"])
        mbs = [v for v in share["mb_per_s"] if v is not None]
        share_out = {**share, "ratios": ratios, "median_sync_s": sync_m, "median_step_s": step_m,
                     "median_ratio": statistics.median(ratios)}
        rows = [[share["steps"], f"{(share['bytes'] or 0) / MB:.1f}", fmt(summary(share["sync_s"]), 3),
                 fmt(summary(share["step_s"]), 2), f"{100 * sync_m / step_m:.1f}%",
                 f"{100 * statistics.median(ratios):.1f}%", fmt(summary(mbs), 0) if mbs else "-"]]
        title = f"sync's share of the step: {share['source']}"
        cols = ["steps", "MB", "timing_s/sync", "timing_s/step", "median sync / median step", "median per-step share",
                "sync MB/s"]
        tables.append({"title": title, "columns": cols, "rows": rows,
                       "markdown": print_table(title, cols, rows, console=con)})
    argv = " ".join(sys.argv[1:])
    write_json(args.json, {"benchmark": "sync_bandwidth", "summary": __doc__.split("\n\n")[0], "header": header,
                           "command": f"flock /tmp/aletheia-heavy.lock aletheia-bench sync_bandwidth {argv}".strip(),
                           "tables": tables, "notes": [], "results": raw, "memcpy": copies, "pack": packs,
                           "share": share_out, "settings": {k: v for k, v in vars(args).items() if k != "json"}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
