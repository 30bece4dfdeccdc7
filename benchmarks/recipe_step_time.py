"""Step time of every paper recipe on the CPU demo shape: one ``aletheia-train --config
configs/debug_cpu.yaml`` run per recipe (the ``make demo`` model, data, actors and cold start) with
only the recipe's algorithm/task overrides of ``configs/paper/`` (scaled to the demo's batch), for
``--steps`` steps each, one run after the other.

Per recipe: median over steps 2..N (step 1 includes warm-up) of ``timing_s/step``, ``timing_s/gen``,
``timing_s/update`` and of the other ``timing_s/*`` keys the run logged; the recipe's headline
metric at the first and last step (``reward/mean``; ``rewards/margins`` for dpo, ``actor/nll`` for
sft_chosen); the wall time of the whole command (Python + Ray start-up, actor start, cold start,
steps, shutdown). dpo also reports its one-off data phase (``timing_s/preference_data`` of
summary.json: sampling, pairing, reference scoring); sft_chosen trains on the pairs of the dpo run
(``preference.pairs_path``), or generates its own if dpo did not run or failed. Every number is read
from the run's ``metrics.jsonl`` / ``summary.json`` / ``cold_start.jsonl``.

Every recipe is first checked with ``aletheia-train --dry-run`` (a config error fails fast with its
message); pair_em's lists are checked against PairEM's distinct-pass-rate rule and the recipe is
skipped (with the reason) if they break it. A failed recipe is a FAILED row with the last lines of
its stderr; the script then exits 1. Runs go to ``--out`` (default: a fresh temp dir), one
directory per recipe (replaced if it exists), with ``<recipe>.stderr.log`` beside it; the table is
also written there as ``recipe_step_time.json`` and ``recipe_step_time.md``.

    flock /tmp/aletheia-heavy.lock python3 benchmarks/recipe_step_time.py [--steps 4] \
        [--recipes grpo,bo_grpo,...] [--out DIR] [extra.dotted=overrides ...]
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks._common import tail  # noqa: E402
CONFIG = REPO / "configs" / "debug_cpu.yaml"
TRAIN = [sys.executable, "-m", "aletheia_ray.launch.train"]  # = aletheia-train
MAIN_TIMINGS = ("step", "gen", "update")
OTHER_ORDER = ("gen_wait", "reward", "adv", "ref", "old_logprob", "sync", "ref_sync")
UNSET_GRPO = ["algorithm.eps_low=null", "algorithm.eps_high=null"]  # the demo's GRPO clip settings
# the offline data of the dpo recipe, scaled to the demo (paper: 100 samples, 4 pairs per list, 64 pairs/step)
PREFERENCE = ["preference.samples_per_list=4", "preference.pairs_per_list=2", "preference.pairs_per_step=8"]


@dataclass
class Recipe:
    name: str
    paper: str  # the configs/paper/ file whose overrides these are
    overrides: list[str]
    headline: str = "reward/mean"  # the metric shown first -> last


def recipes(prompts_per_step: int) -> dict[str, Recipe]:
    bo_updates = 4 if prompts_per_step >= 4 else 2  # mini-batches of whole prompt groups
    listed = [
        Recipe("grpo", "grpo_think_*.yaml (the demo as is)", []),
        Recipe("bo_grpo", "bo_grpo.yaml", ["algorithm.loss=gspo", "algorithm.sync_mode=batch_online",
                                           f"algorithm.updates_per_generation={bo_updates}",
                                           "algorithm.eps_low=3e-4", "algorithm.eps_high=4e-4"]),
        Recipe("async_tis", "grpo_think_async (sync mode)", ["algorithm.sync_mode=async_tis"]),
        Recipe("raft", "raft.yaml", ["algorithm.loss=raft", *UNSET_GRPO, "algorithm.beta=null"]),
        Recipe("pair_em", "pair_em.yaml", ["data.kind=pairs", "reward.fn=pair_em"]),
        Recipe("list_sc", "list_sc.yaml", ["reward.fn=list_sc"]),
        Recipe("pair_sc", "pair_sc.yaml", ["data.kind=pairs", "reward.fn=pair_sc"]),
        Recipe("dpo", "dpo_think.yaml", ["algorithm.loss=dpo", *UNSET_GRPO, "algorithm.beta=0.1", *PREFERENCE],
               headline="rewards/margins"),
        Recipe("sft_chosen", "dpo_sft_baseline.yaml", ["algorithm.loss=sft_chosen", *UNSET_GRPO, "algorithm.beta=null",
                                                       *PREFERENCE], headline="actor/nll"),
    ]
    return {r.name: r for r in listed}


@dataclass
class Result:
    recipe: str
    overrides: list[str]
    status: str = "ok"  # ok | FAILED | SKIPPED
    reason: str = ""  # FAILED: the last lines of stderr; SKIPPED: why
    steps: int = 0
    median_s: dict[str, float] = field(default_factory=dict)  # timing key -> median over steps 2..N
    step1_s: Optional[float] = None
    headline: str = ""
    first: Optional[float] = None
    last: Optional[float] = None
    wall_s: Optional[float] = None
    extra: dict[str, Any] = field(default_factory=dict)  # summary.json / cold_start.jsonl numbers
    output_dir: str = ""


# ---------------------------------------------------------------------------------------- running

def common_overrides(out: Path, steps: int) -> list[str]:
    return [f"output_dir={out}", f"trainer.total_steps={steps}", "trainer.save_steps=0", "trainer.save_final=false",
            "evaluation.enabled=false", "logging.wandb=disabled"]


def dry_run(name: str, overrides: list[str], root: Path) -> Optional[str]:
    """``aletheia-train --dry-run``: None if the config is valid, else the last lines of its error."""
    proc = subprocess.run([*TRAIN, "--config", str(CONFIG), "--dry-run", *overrides], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    (root / f"{name}.dry_run.txt").write_text(proc.stdout + proc.stderr)
    return None if proc.returncode == 0 else f"--dry-run exit {proc.returncode}:\n{tail(proc.stderr or proc.stdout)}"


def pair_em_check(overrides: list[str]) -> Optional[str]:
    """PairEM needs distinct pass rates within every pair of every list the task reads (the task's own
    check, ``validate_pair_em_lists``, run on the lists it would load); None if they satisfy it."""
    from aletheia_ray.config import load_config
    from aletheia_ray.data.lists import load_lists
    from aletheia_ray.rewards import equal_pass_rate_pairs
    from aletheia_ray.train_config import TrainConfig

    cfg = load_config(CONFIG, overrides, schema=TrainConfig)
    lists = load_lists(cfg.data.train_path)
    bad = [(lst.idx, p) for lst in lists for p in equal_pass_rate_pairs(lst)]
    print(f"[pair_em] {cfg.data.train_path}: {len(lists)} lists, {len(bad)} candidate pairs with equal pass rates",
          file=sys.stderr, flush=True)
    if not bad:
        return None
    try:
        cfg.data.task.read_items(cfg)  # the task's own check (validate_pair_em_lists): its message names the lists
    except ValueError as e:
        return (f"the demo's lists break PairEM's distinct-pass-rate rule ({len(bad)} pairs): {e}; runs with "
                f"data.train_path=<lists with distinct pass rates> or reward.fn=pair_sc")
    return f"{len(bad)} pairs with equal pass rates: {bad[:3]}"


def kill_leftovers(marker: str) -> list[int]:
    """Processes of this run (their command line names its private Ray temp dir) still alive after it exited."""
    import psutil

    found: dict[int, Any] = {}
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if marker in " ".join(p.info["cmdline"] or []):
                found[p.pid] = p
                for child in p.children(recursive=True):
                    found[child.pid] = child
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    procs = list(found.values())
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=5)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    return sorted(found)


def train(name: str, overrides: list[str], root: Path, timeout: float) -> tuple[int, float, str]:
    """One ``aletheia-train`` run with its own Ray temp dir; (exit code, wall seconds, stderr)."""
    ray_tmp = tempfile.mkdtemp(prefix="bray", dir="/tmp")  # short: Ray's socket paths have a length limit
    argv = [*TRAIN, "--config", str(CONFIG), *overrides, f"ray.temp_dir={ray_tmp}"]
    print(f"[{name}] aletheia-train --config {CONFIG.relative_to(REPO)} {' '.join(overrides)}", file=sys.stderr,
          flush=True)
    log_path = root / f"{name}.stderr.log"
    start = time.monotonic()
    with open(log_path, "w") as err, open(root / f"{name}.stdout.log", "w") as out:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=err)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = -9
            err.write(f"\n[recipe_step_time] killed after --timeout {timeout:.0f} s\n")
    wall = time.monotonic() - start
    leftovers = kill_leftovers(ray_tmp)
    if leftovers:
        print(f"[{name}] stopped {len(leftovers)} leftover processes of the run", file=sys.stderr, flush=True)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    print(f"[{name}] exit {code} after {wall:.0f} s", file=sys.stderr, flush=True)
    return code, wall, log_path.read_text(errors="replace")


# ---------------------------------------------------------------------------------------- reading

def median_timings(rows: list[dict]) -> tuple[dict[str, float], Optional[float]]:
    steady = rows[1:] or rows  # step 1 includes warm-up (first generation, first update)
    keys = {k for r in steady for k in r if k.startswith("timing_s/")}
    medians = {k.removeprefix("timing_s/"): statistics.median(r[k] for r in steady if isinstance(r.get(k), (int, float)))
               for k in keys}
    return medians, (rows[0].get("timing_s/step") if rows else None)


def read_result(result: Result, recipe: Recipe, out: Path) -> None:
    from aletheia_ray.tracking import read_metrics

    rows = read_metrics(out)
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    if not rows:
        raise ValueError(f"{out}/metrics.jsonl has no rows")
    result.steps = len(rows)
    result.median_s, result.step1_s = median_timings(rows)
    result.headline = recipe.headline
    values = [r.get(recipe.headline) for r in rows]
    result.first, result.last = values[0], values[-1]
    cold = out / "cold_start.jsonl"
    if cold.exists():
        cold_rows = [json.loads(line) for line in cold.read_text().splitlines() if line.strip()]
        result.extra["cold_start_updates"] = len(cold_rows)
        result.extra["cold_start_s"] = sum(r.get("timing_s/update", 0.0) for r in cold_rows)
    for key in ("timing_s/preference_data", "preference/pairs", "preference/train_units", "preference/pairs_path",
                "preference/gen_reward/list_acc", "data/num_items", "data/num_lists", "wall_s"):
        if key in summary:
            result.extra[key] = summary[key]
    for key in ("actor/num_updates", "rollout/staleness", "filter/kept_samples", "actor/skipped_update",
                "reward/parse_rate", "rewards/accuracies"):
        if any(key in r for r in rows):
            result.extra[f"{key} per step"] = [r.get(key) for r in rows]


# ---------------------------------------------------------------------------------------- table

def fmt(value: Optional[float], spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def other_timings(r: Result) -> str:
    keys = [k for k in OTHER_ORDER if k in r.median_s] + sorted(k for k in r.median_s
                                                               if k not in OTHER_ORDER and k not in MAIN_TIMINGS)
    parts = [f"{k} {r.median_s[k]:.2f}" for k in keys]
    if "timing_s/preference_data" in r.extra:
        parts.append(f"preference_data (once) {r.extra['timing_s/preference_data']:.1f}")
    if "cold_start_s" in r.extra:
        parts.append(f"cold start ({r.extra['cold_start_updates']} upd) {r.extra['cold_start_s']:.1f}")
    return ", ".join(parts) or "-"


def columns(r: Result) -> list[str]:
    overrides = " ".join(r.overrides) or "(none: the demo)"
    if r.status != "ok":
        return [r.recipe, overrides, str(r.steps or "-"), "-", "-", "-", "-", "-", f"{r.status}: {r.reason}",
                fmt(r.wall_s, ".0f")]
    m = r.median_s
    trend = f"{r.headline} {fmt(r.first, '+.3f')} -> {fmt(r.last, '+.3f')}"
    return [r.recipe, overrides, str(r.steps), fmt(m.get("step")), fmt(m.get("gen")), fmt(m.get("update")),
            fmt(r.step1_s), other_timings(r), trend, fmt(r.wall_s, ".0f")]


HEADERS = ("recipe", "overrides", "steps", "step s", "gen s", "update s", "step 1 s",
           "other timing_s (median), one-off phases", "first -> last", "wall s")


def write_outputs(results: list[Result], title: str, root: Path) -> tuple[Path, Path]:
    json_path, md_path = root / "recipe_step_time.json", root / "recipe_step_time.md"
    json_path.write_text(json.dumps({"title": title, "config": str(CONFIG.relative_to(REPO)),
                                     "results": [asdict(r) for r in results]}, indent=1) + "\n")
    cell = lambda s: s.replace("|", "\\|").replace("\n", "<br>")  # noqa: E731
    lines = [f"**{title}**", "", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cell(c) for c in columns(r)) + " |" for r in results]
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path


# ---------------------------------------------------------------------------------------- main

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--recipes", default=None, help="comma-separated (default: all, in the table's order)")
    p.add_argument("--out", default=None, help="root of the runs' output dirs (default: a fresh temp dir)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per aletheia-train run")
    p.add_argument("--check", action="store_true", help="only the dry runs and the PairEM check; start nothing")
    p.add_argument("extra", nargs="*", help="more dotted overrides for every run")
    args = p.parse_args(argv)
    if args.steps < 2:
        raise SystemExit("--steps must be >= 2 (medians are over steps 2..N)")

    from aletheia_ray.config import load_config
    from aletheia_ray.train_config import TrainConfig

    demo = load_config(CONFIG, ["output_dir=/tmp/unused", *args.extra], schema=TrainConfig)
    table = recipes(demo.algorithm.prompts_per_step)
    names = list(table) if args.recipes is None else [n for n in args.recipes.split(",") if n]
    unknown = [n for n in names if n not in table]
    if unknown or not names:
        raise SystemExit(f"--recipes: unknown {unknown} (known: {list(table)})")
    root = Path(args.out).resolve() if args.out else Path(tempfile.mkdtemp(prefix="bench_recipe_step_time_"))
    root.mkdir(parents=True, exist_ok=True)

    def run_overrides(name: str) -> list[str]:
        return [*common_overrides(root / name, args.steps), *table[name].overrides, *args.extra]

    # 1. every config checked before anything heavy starts (sft_chosen again with its pairs_path later)
    results: dict[str, Result] = {n: Result(n, list(table[n].overrides)) for n in names}
    for name in names:
        error = dry_run(name, run_overrides(name), root)
        if error is None and name == "pair_em":
            reason = pair_em_check(run_overrides(name))
            if reason:
                results[name].status, results[name].reason = "SKIPPED", reason
                print(f"[pair_em] SKIPPED: {reason}", file=sys.stderr, flush=True)
        elif error is not None:
            results[name].status, results[name].reason = "FAILED", error
        print(f"[{name}] dry run: {'ok' if error is None else error}", file=sys.stderr, flush=True)
    if args.check:
        return 1 if any(r.status == "FAILED" for r in results.values()) else 0

    # 2. the runs, one after the other
    for name in names:
        result, recipe = results[name], table[name]
        if result.status != "ok":
            continue
        overrides = run_overrides(name)
        if name == "sft_chosen":
            pairs = root / "dpo" / "preference" / "pairs.jsonl"
            if "dpo" in names and results["dpo"].status == "ok" and pairs.exists():
                extra = [f"preference.pairs_path={pairs}"]
                error = dry_run(name, [*overrides, *extra], root)
                if error is not None:
                    result.status, result.reason = "FAILED", error
                    continue
                overrides += extra
                result.overrides.append("preference.pairs_path=<dpo run>/preference/pairs.jsonl")
            else:
                result.overrides.append("(no dpo pairs: generates its own)")
        shutil.rmtree(root / name, ignore_errors=True)
        code, result.wall_s, stderr = train(name, overrides, root, args.timeout)
        result.output_dir = str(root / name)
        if code != 0:
            result.status, result.reason = "FAILED", f"exit {code}:\n{tail(stderr)}"
            continue
        try:
            read_result(result, recipe, root / name)
        except (OSError, ValueError) as e:
            result.status, result.reason = "FAILED", f"exit 0 but its metrics are unreadable: {e}"

    done = [results[n] for n in names]
    title = (f"paper recipes on the demo shape ({CONFIG.relative_to(REPO)}, "
             f"{demo.algorithm.prompts_per_step} prompts x {demo.algorithm.samples_per_prompt} samples): "
             f"{args.steps} steps each, timings = median of steps 2..{args.steps} (s); every run also "
             f"{' '.join(common_overrides(Path('<out>/<recipe>'), args.steps)[1:])}")
    console = Table(title=title, show_lines=True)
    for col in HEADERS:
        console.add_column(col, justify="left" if col in ("recipe", "overrides", "first -> last") or "timing" in col
                           else "right", overflow="fold")
    for r in done:
        console.add_row(*columns(r))
    Console(width=200).print(console)
    json_path, md_path = write_outputs(done, title, root)
    print(f"runs under {root}; table also in {json_path} and {md_path}")
    failed = [r.recipe for r in done if r.status == "FAILED"]
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
