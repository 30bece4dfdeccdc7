"""Per-step time of TRL's GRPOTrainer against aletheia-train (on_policy, batch_online, async_tis) on
one workload, side by side in one run with alternating repetitions.

    flock /tmp/aletheia-heavy.lock aletheia-bench e2e_vs_trl [--model DIR] [--reps N] [--steps N]
        [--json OUT] [--ours-overrides "key=value ..."]

The workload (``configs/bench_e2e.yaml``; TRL's arguments are derived from the loaded config, so the
two sides cannot drift apart): the 4M bench model ``../shared/models/tiny-qwen2-bench`` (never emits
EOS, so every completion is exactly max_new_tokens long), 8 prompts x 8 samples x 64 new tokens per
step, prompts of 67/89 tokens (mean 78: the 8 synthetic lists of seed 2, built by our own task
loader; TRL gets their decoded text as plain, non-conversational prompts, and the worker checks that
TRL's tokenisation gives the same ids), T=1.0, top_p=1.0, beta=1e-3 (KL to a frozen reference),
DAPO token-level loss with eps 0.2/0.28 (TRL ``loss_type="dapo"``; ours ``algorithm.loss=grpo``),
fp32, lr 1e-6, no cold start, checkpoints, evaluation or wandb. The reward is -1 for every
completion on both sides (ours: ListEM's format penalty, overlong off, since the model never writes
``\\boxed{}``; TRL: a constant function), so advantages are 0 but every step still does the full
generation, reference pass and forward/backward with the KL term.

Systems, in this order in every repetition: TRL with its defaults (gradient checkpointing on), TRL
with gradient_checkpointing=False (both one process, HF generate, ``use_cpu=True``, bf16 off, one
update per generation), ours on_policy (one update per generation; the demo layout: 1 vLLM engine
and the reference on 2 threads each, 2 ZeRO-2 ranks x 1 thread), the same with 1 learner rank x 2
threads (no gloo all-reduce), ours batch_online (2 updates per generation on mini-batches of 4
prompt groups, same grpo/DAPO loss, so only the mode differs) and ours async_tis (generation of
step k+1 overlaps the update of step k, TIS cap 2; engine and reference 1 thread each). Each run is a
fresh process (ours starts its own Ray in a private temp dir). Step times are summarised over steps
3..N of every repetition (median, min-max) plus per-repetition medians. Phases: ours are the
``timing_s/*`` medians (gen = generation time, gen_wait = time the step was blocked on it); TRL's
are timed by wrapping its methods (gen = ``_generate``, ref/old_logprob = the no-grad logprob
passes, update = step - ``_generate_and_score_completions``); TRL skips old_logprob when generation
and updates are aligned ("-"). Startup = process launch to the start of step 1. Peak RSS = the
largest sum of RSS over the run's process tree, sampled each second (shared pages counted twice).
A failed run is shown as FAILED with its last stderr lines; the exit code is then 1.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks._common import (alternate, fmt, machine_header, print_table, ratio, summary, tail,  # noqa: E402
                                write_json)

CONFIG = REPO / "configs" / "bench_e2e.yaml"
DEFAULT_MODEL = "../shared/models/tiny-qwen2-bench"
BO_UPDATES = 2
WARMUP_STEPS = 2  # steps 1-2 (first generation, first update, allocator warm-up) are left out
ONE_RANK = ["learner.num_ranks=1", "learner.num_cpus_per_rank=1", "learner.num_threads_per_rank=2"]
# thread layouts (configs/bench_e2e.yaml: engine 2, reference 2, 2 ranks x 1): stages that run one
# after another take both cores; async_tis overlaps generation with the update, so the engine and
# the reference take one core each (measured best of 4 layouts on 2 cores; docs/benchmarks.md)
OURS = {"ours on_policy": ["algorithm.sync_mode=on_policy"],
        "ours on_policy, 1 rank": ["algorithm.sync_mode=on_policy", *ONE_RANK],
        "ours batch_online": ["algorithm.sync_mode=batch_online", f"algorithm.updates_per_generation={BO_UPDATES}"],
        "ours async_tis": ["algorithm.sync_mode=async_tis", "rollout.num_threads_per_engine=1",
                           "reference.num_threads=1"]}
TRL = {"TRL default (grad ckpt)": True, "TRL grad ckpt off": False}
PHASES = ("gen", "ref", "old_logprob", "update", "sync")
T0 = time.monotonic()
RAY_DIRS: list[str] = []  # the private Ray temp dirs of our runs (checked for leftovers at the end)


def say(msg: str) -> None:
    print(f"[e2e_vs_trl +{time.monotonic() - T0:.0f}s] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ the TRL worker

def trl_worker(spec_path: str, out_path: str) -> None:
    """One TRL GRPOTrainer run (a subprocess of the benchmark): per-step times and phases as JSON."""
    spec = json.loads(Path(spec_path).read_text())
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    steps: list[dict[str, float]] = []
    trl_logs: list[dict[str, Any]] = []
    current: dict[str, float] = {}
    first_step_wall: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if not first_step_wall:
                first_step_wall.append(time.time())
            current.clear()
            current["_begin"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            row = {k: v for k, v in current.items() if not k.startswith("_")}
            row["step"] = time.perf_counter() - current["_begin"]
            row["update"] = row["step"] - row.get("prepare", 0.0)
            steps.append(row)

        def on_log(self, args, state, control, logs=None, **kwargs):
            trl_logs.append(dict(logs or {}))

    def reward(completions, **kwargs):  # the model never writes \boxed{}: ours gives ListEM's -1 to all
        return [-1.0] * len(completions)

    config = GRPOConfig(
        output_dir=spec["output_dir"], use_cpu=True, bf16=False, seed=spec["seed"], report_to="none",
        save_strategy="no", logging_steps=1, max_steps=spec["steps"], learning_rate=spec["lr"],
        lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=spec["grad_clip"],
        per_device_train_batch_size=spec["batch"], num_generations=spec["samples"], steps_per_generation=1,
        gradient_accumulation_steps=1, max_completion_length=spec["max_new_tokens"],
        temperature=spec["temperature"], top_p=spec["top_p"], beta=spec["beta"], loss_type="dapo",
        epsilon=spec["eps_low"], epsilon_high=spec["eps_high"], dataloader_num_workers=0,
        model_init_kwargs={"dtype": "float32", "attn_implementation": "sdpa"},
        **({} if spec["gradient_checkpointing"] is None else {"gradient_checkpointing": spec["gradient_checkpointing"]}))
    dataset = Dataset.from_dict({"prompt": spec["prompts"]})
    trainer = GRPOTrainer(model=spec["model"], reward_funcs=reward, args=config, train_dataset=dataset,
                          callbacks=[StepTimer()])

    def timed(name: str, fn, key=None):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                k = key(args) if key else name
                current[k] = current.get(k, 0.0) + time.perf_counter() - start
        return wrapper

    def logprob_kind(args) -> str:  # the no-grad passes before the update: reference or old policy
        if args and args[0] is trainer.ref_model:
            return "ref"
        return "_forward" if torch.is_grad_enabled() else "old_logprob"

    trainer._generate = timed("gen", trainer._generate)
    trainer._generate_and_score_completions = timed("prepare", trainer._generate_and_score_completions)
    trainer._get_per_token_logps_and_entropies = timed("", trainer._get_per_token_logps_and_entropies, logprob_kind)
    ids = trainer.processing_class(text=spec["prompts"])["input_ids"]
    trainer.train()
    Path(out_path).write_text(json.dumps({
        "steps": steps, "logs": trl_logs, "startup_s": first_step_wall[0] - spec["launch_wall"] if first_step_wall else None,
        "ids_match": [list(x) for x in ids] == spec["prompt_ids"],
        "gradient_checkpointing": bool(trainer.args.gradient_checkpointing)}))


# ------------------------------------------------------------------------------ running one system

def run_process(name: str, argv: list[str], log_dir: Path, timeout: float, metrics: Optional[Path] = None,
                env: Optional[dict] = None) -> dict[str, Any]:
    """Run ``argv`` (own session), sampling its process tree's RSS each second; for ours, the wall
    time at which ``metrics`` got its first row. Returns code, wall, stderr tail, peak RSS."""
    log = log_dir / f"{name.replace(' ', '_')}.stderr.log"
    start = time.time()
    with open(log, "w") as err:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err, env=env, start_new_session=True)
        try:
            peak, first_row = _watch(proc, err, start, timeout, metrics)
        except BaseException:  # Ctrl-C / error here: take the run's process group down with us
            os.killpg(proc.pid, 9)
            raise
    code = proc.wait()
    return {"code": code, "wall_s": time.time() - start, "stderr": tail(log.read_text(errors="replace"), 12, 300),
            "peak_rss_gib": peak / 2**30, "first_row_wall": first_row, "launch_wall": start, "log": str(log)}


def _watch(proc, err, start: float, timeout: float, metrics: Optional[Path]) -> tuple[int, Optional[float]]:
    """Poll every second: RSS of the process tree, first metrics row, timeout."""
    import psutil

    peak, first_row = 0, None
    while proc.poll() is None:
        try:
            root = psutil.Process(proc.pid)
            peak = max(peak, sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]
                                 if p.is_running()))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
        if first_row is None and metrics is not None and metrics.exists() and metrics.stat().st_size:
            first_row = time.time()
        if time.time() - start > timeout:
            os.killpg(proc.pid, 9)
            proc.wait()
            err.write(f"\n[e2e_vs_trl] killed after --timeout {timeout:.0f} s\n")
            break
        time.sleep(1.0)
    return peak, first_row


def run_trl(name: str, grad_ckpt: Optional[bool], spec: dict, root: Path, rep: int, timeout: float) -> dict:
    out = root / f"trl_{int(bool(grad_ckpt))}_rep{rep}"
    out.mkdir(parents=True, exist_ok=True)
    spec = {**spec, "gradient_checkpointing": None if grad_ckpt else False, "output_dir": str(out / "trainer"),
            "launch_wall": time.time()}
    (out / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    run = run_process(name, [sys.executable, str(Path(__file__).resolve()), "--_trl-worker", str(out / "spec.json"),
                             str(out / "result.json")], out, timeout, env=env)
    if run["code"] != 0 or not (out / "result.json").exists():
        return {**run, "ok": False}
    res = json.loads((out / "result.json").read_text())
    rows = [r for r in res["logs"] if "completions/mean_length" in r]
    tokens = [b["num_tokens"] - a["num_tokens"] for a, b in zip([{"num_tokens": 0}, *rows], rows)]
    for s, r, t in zip(res["steps"], rows, tokens):
        s["gen_tokens"] = r["completions/mean_length"] * spec["batch"]
        s["prompt_len"] = (t - s["gen_tokens"]) / spec["batch"]
        s["trl_step_time"] = r.get("step_time")
    return {**run, "ok": True, "steps": res["steps"], "startup_s": res["startup_s"], "ids_match": res["ids_match"],
            "gradient_checkpointing": res["gradient_checkpointing"]}


def run_ours(name: str, overrides: list[str], root: Path, rep: int, timeout: float) -> dict:
    from aletheia_ray.tracking import read_metrics
    from benchmarks.recipe_step_time import kill_leftovers

    out = root / f"{name.replace(' ', '_')}_rep{rep}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    ray_tmp = tempfile.mkdtemp(prefix="bray", dir="/tmp")  # short: Ray's socket paths have a length limit
    RAY_DIRS.append(ray_tmp)
    argv = [sys.executable, "-m", "aletheia_ray.launch.train", "--config", str(CONFIG), f"output_dir={out / 'run'}",
            *overrides, f"ray.temp_dir={ray_tmp}"]
    run = run_process(name, argv, out, timeout, metrics=out / "run" / "metrics.jsonl")
    leftovers = kill_leftovers(ray_tmp)
    if leftovers:
        say(f"{name}: stopped {len(leftovers)} leftover processes of the run")
    shutil.rmtree(ray_tmp, ignore_errors=True)
    rows = read_metrics(out / "run") if run["code"] == 0 else []
    if not rows:
        return {**run, "ok": False}
    steps = [{"step": r["timing_s/step"], **{p: r.get(f"timing_s/{p}") for p in (*PHASES, "gen_wait")},
              "prompt_len": r.get("prompt_length/mean"), "response_len": r.get("response_length/mean")}
             for r in rows]
    startup = run["first_row_wall"] - run["launch_wall"] - rows[0]["timing_s/step"] if run["first_row_wall"] else None
    return {**run, "ok": True, "steps": steps, "startup_s": startup, "leftovers": len(leftovers)}


# ------------------------------------------------------------------------------ summary

def summarize(name: str, reps: list[dict], batch: int) -> dict[str, Any]:
    ok = [r for r in reps if r.get("ok")]
    out: dict[str, Any] = {"system": name, "reps_ok": len(ok), "reps": len(reps)}
    if not ok:
        out["failed"] = reps[-1].get("stderr", "") if reps else "not run"
        return out
    window = [s for r in ok for s in (r["steps"][WARMUP_STEPS:] or r["steps"])]
    out["step_s"] = summary(s["step"] for s in window)
    out["per_rep_median_s"] = [statistics.median(s["step"] for s in (r["steps"][WARMUP_STEPS:] or r["steps"])) for r in ok]
    out["phases"] = {p: summary(s.get(p) for s in window) for p in (*PHASES, "gen_wait")}
    gen_tok = [s.get("gen_tokens") or (s["response_len"] * batch if s.get("response_len") else None) for s in window]
    out["gen_tokens"] = summary(gen_tok)
    out["prompt_len"] = summary(s.get("prompt_len") for s in window)
    out["startup_s"] = summary(r.get("startup_s") for r in ok)
    out["peak_rss_gib"] = summary(r["peak_rss_gib"] for r in ok)
    out["steps_in_window"] = len(window)
    return out


def table_rows(results: dict[str, dict]) -> list[list[str]]:
    trl = results.get("TRL default (grad ckpt)", {}).get("step_s", {}).get("median", float("nan"))
    ours = results.get("ours on_policy", {}).get("step_s", {}).get("median", float("nan"))
    rows = []
    for name, r in results.items():
        if "step_s" not in r:
            rows.append([name, f"FAILED ({r['reps']} of {r['reps']} reps): {tail(r['failed'], 2, 300)}",
                         *["-"] * (len(COLUMNS) - 2)])
            continue
        med, ph = r["step_s"]["median"], r["phases"]
        gen = fmt(ph["gen"])
        if ph["gen_wait"]["n"]:
            gen += f" / wait {ph['gen_wait']['median']:.2f}"
        failed = f" [{r['reps'] - r['reps_ok']} rep(s) FAILED]" if r["reps_ok"] < r["reps"] else ""
        rows.append([name, fmt(r["step_s"]) + failed, ratio(med, trl), ratio(ours, med), gen,
                     *(fmt(ph[p]) for p in PHASES[1:]), fmt(r["gen_tokens"], 0), fmt(r["prompt_len"], 1),
                     fmt(r["startup_s"], 1), fmt(r["peak_rss_gib"], 2),
                     " ".join(f"{m:.2f}" for m in r["per_rep_median_s"])])
    return rows


COLUMNS = ("system", "s/step median (min-max)", "s/step vs TRL default", "steps/s vs ours on_policy",
           "gen s (/ wait)", "ref s", "old_logprob s", "update s", "sync s", "gen tokens/step", "prompt tokens (mean)",
           "startup s", "peak RSS GiB", "per-rep median s/step")


# ------------------------------------------------------------------------------ main

def workload(model: str, extra: list[str]) -> tuple[dict, list[str]]:
    """Our config (with the pass-through overrides) -> the TRL spec; the first step's prompts, decoded."""
    from transformers import AutoTokenizer

    from aletheia_ray.config import load_config
    from aletheia_ray.train_config import TrainConfig

    cfg = load_config(CONFIG, ["output_dir=/tmp/unused", f"model.path={model}", *extra], schema=TrainConfig)
    tok = AutoTokenizer.from_pretrained(model)
    data = cfg.data.task.load(cfg, tok)
    a, s = cfg.algorithm, cfg.algorithm.settings
    if len(data.prompt_ids) != a.prompts_per_step:
        raise SystemExit(f"{CONFIG.name}: {len(data.prompt_ids)} items but prompts_per_step={a.prompts_per_step}; "
                         "every step must train on all items for TRL to see the same prompts")
    prompts = [tok.decode(ids) for ids in data.prompt_ids]
    notes = [] if a.loss == "grpo" else [f"WARNING: ours algorithm.loss={a.loss}, TRL runs dapo"]
    if cfg.cold_start.enabled:
        notes.append("WARNING: ours has a cold start; TRL has none")
    spec = {"model": model, "prompts": prompts, "prompt_ids": [list(x) for x in data.prompt_ids], "seed": cfg.seed,
            "lr": cfg.learner.lr, "grad_clip": cfg.learner.grad_clip, "samples": a.samples_per_prompt,
            "batch": a.samples_per_prompt * a.prompts_per_step, "max_new_tokens": cfg.rollout.max_new_tokens,
            "temperature": cfg.rollout.temperature, "top_p": cfg.rollout.top_p, "beta": s.get("beta", 0.0),
            "eps_low": s.get("eps_low"), "eps_high": s.get("eps_high"), "dtype": cfg.model.dtype,
            "prompt_len_mean": statistics.fmean(len(x) for x in data.prompt_ids),
            "retokenized_equal": all(tok(p, add_special_tokens=False)["input_ids"] == ids
                                     for p, ids in zip(prompts, data.prompt_ids))}
    return spec, notes


def main(argv=None) -> int:
    if argv is None and len(sys.argv) == 4 and sys.argv[1] == "--_trl-worker":
        trl_worker(sys.argv[2], sys.argv[3])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=DEFAULT_MODEL, help="HF model dir (relative: to the repo root)")
    p.add_argument("--json", default=None, help="write the results as JSON here")
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--ours-overrides", default="", help='dotted overrides for every aletheia-train run ("k=v k=v")')
    p.add_argument("--systems", default=None, help="comma-separated subset of the systems (default: all)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    p.add_argument("--out", default=None, help="where runs and logs go (default: a fresh temp dir)")
    args = p.parse_args(argv)
    if importlib.util.find_spec("trl") is None:
        print("e2e_vs_trl: TRL is not installed; install the benchmark extra: pip install -e .[bench]  "
              "(trl==1.16.0)", file=sys.stderr)
        return 2
    all_systems = [*TRL, *OURS]
    names = all_systems if args.systems is None else [n.strip() for n in args.systems.split(",") if n.strip()]
    if set(names) - set(all_systems) or args.steps < 1 or args.reps < 1:
        raise SystemExit(f"--systems: known {all_systems}; --steps and --reps must be >= 1")
    model = str((REPO / args.model).resolve()) if not Path(args.model).is_absolute() else args.model
    extra = shlex.split(args.ours_overrides)
    spec, notes = workload(model, extra)
    spec["steps"] = args.steps
    root = Path(args.out).resolve() if args.out else Path(tempfile.mkdtemp(prefix="bench_e2e_vs_trl_"))
    root.mkdir(parents=True, exist_ok=True)
    header = machine_header()
    shape = (f"{spec['batch'] // spec['samples']} prompts x {spec['samples']} samples x {spec['max_new_tokens']} new "
             f"tokens, prompts {spec['prompt_len_mean']:.1f} tokens (re-tokenised equal: {spec['retokenized_equal']}), "
             f"T={spec['temperature']} top_p={spec['top_p']} beta={spec['beta']} DAPO eps {spec['eps_low']}/"
             f"{spec['eps_high']} lr {spec['lr']} {spec['dtype']}; model {model}")
    say(f"workload: {shape}")
    for n in notes:
        say(n)
    say(f"runs and logs under {root}")

    def make_trl(name: str):
        return lambda rep: run_trl(name, TRL[name], spec, root, rep, args.timeout)

    def make_ours(name: str):
        overrides = [f"model.path={model}", f"trainer.total_steps={args.steps}", *OURS[name], *extra]
        return lambda rep: run_ours(name, overrides, root, rep, args.timeout)

    def logged(name: str, fn):
        def run(rep: int) -> dict:
            res = fn(rep)
            if res.get("ok"):
                steps = [s["step"] for s in res["steps"]]
                say(f"{name} rep {rep + 1}: {len(steps)} steps, median {statistics.median(steps):.2f} s/step, "
                    f"startup {res.get('startup_s') or float('nan'):.1f} s, wall {res['wall_s']:.0f} s")
            else:
                say(f"{name} rep {rep + 1}: FAILED (exit {res['code']}, log {res['log']}):\n{res['stderr']}")
            return res
        return run

    systems = {n: logged(n, make_trl(n) if n in TRL else make_ours(n)) for n in names}
    raw = alternate(systems, args.reps, log=say)
    results = {n: summarize(n, raw[n], spec["batch"]) for n in names}
    trl_ids = [r.get("ids_match") for n in TRL if n in raw for r in raw[n] if r.get("ok")]
    title = (f"e2e_vs_trl: {shape}; s/step over steps {min(WARMUP_STEPS + 1, args.steps)}..{args.steps} of "
             f"{args.reps} rep(s); TRL prompt ids == ours: {all(trl_ids) if trl_ids else '-'}; "
             f"batch_online = {BO_UPDATES} updates/step")
    from rich.console import Console

    markdown = print_table(title, COLUMNS, table_rows(results), header=header, console=Console(width=240))
    print(f"\n**{title}**\n\n{markdown}\n")
    import psutil

    stray = [p.pid for p in psutil.process_iter(["cmdline"])
             if any(d in " ".join(p.info["cmdline"] or []) for d in RAY_DIRS)]
    if stray:
        say(f"WARNING: Ray processes still running after the runs: {stray}")
    write_json(args.json, {"header": header, "workload": {k: v for k, v in spec.items() if k != "prompt_ids"},
                           "notes": notes, "args": vars(args), "summary": results, "markdown": markdown,
                           "runs": {n: [{k: v for k, v in r.items()} for r in raw[n]] for n in names}})
    return 0 if all(r.get("reps_ok") == r.get("reps") for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
