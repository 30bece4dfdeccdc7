"""``aletheia-testbed pipeline``: problems -> filtered problems -> generated, executed candidates -> lists.

Stages (each timed; wall seconds in ``summary.json`` under ``pipeline.stages``):

1. ``load``: the PROBLEMS files are merged into ``OUT/problems.jsonl`` and loaded (problem filters).
2. ``filter``: the test-quality filter (``test_quality.py``): each problem's reference solution
   and its mutants run in the sandbox; problems whose tests pass a known-bad program too often
   (TNR < ``filter.min_tnr``) or fail the reference (TPR < ``filter.min_tpr``) are dropped, by id
   with their TPR/TNR, in ``pipeline.test_quality.dropped``. It runs before generation so no
   samples are generated or executed for problems that will be dropped.
3. ``generate``: ``generation.py`` on the rollout pool, for the kept problems.
4. ``execute``: pass rates of the generated programs in the sandbox (``execution.py``; with
   ``execution.backend: ray`` on the Ray ``SandboxPool`` actors, else local executors).
5. ``build``: ``OUT/candidates.jsonl`` (flat CANDIDATES rows with pass rates: the generated
   programs plus, when ``generation.reference`` is set, the reference and its failing mutants as
   that generator's candidates: a mutant that survived the tests is left out, so the one correct
   program of a reference list is the reference itself) and ``OUT/problems_kept.jsonl`` go through ``build.build_testbed``.

Resumable: generation (``generation_cache.jsonl``) and execution (``execution_cache.jsonl``, shared
by filter and execute) are cached per group / program, so a rerun with the same out dir generates
and executes nothing already done; Ray is started only when something must run on it.
"""
from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Optional

from aletheia_ray.data.problems import ID_KEYS, load_problems, read_jsonl
from aletheia_ray.data.report import BuildReport
from aletheia_ray.testbed.candidates import Candidate, check_candidates
from aletheia_ray.testbed.config import ExecutionConfig, TestbedConfig
from aletheia_ray.testbed.execution import ExecutionCache, Runner, make_runner, score_missing
from aletheia_ray.testbed.generation import GenerationCache, cache_path, generate_candidates, generated_rows
from aletheia_ray.testbed.pipeline_config import GenerationRolloutConfig
from aletheia_ray.testbed.test_quality import Quality, mutants_for, reference_solutions


@dataclass
class RayHooks:
    """What the pipeline needs from the Ray layer, passed in by ``aletheia-testbed`` (the library
    never imports ``aletheia_ray.actors``): a Ray session (entered lazily), a rollout pool for a
    model directory, and the sandbox-pool runner for ``execution.backend: ray``."""
    session: Callable[[], ContextManager]
    rollout_pool: Callable[[str, GenerationRolloutConfig, int], Any]
    sandbox_runner: Callable[[ExecutionConfig], Runner]


class LazyRay:
    """Enter ``hooks.session()`` the first time something needs Ray."""

    def __init__(self, hooks: Optional[RayHooks]) -> None:
        self.hooks = hooks
        self.stack = contextlib.ExitStack()
        self.start_s: float | None = None

    def ensure(self, what: str) -> RayHooks:
        if self.hooks is None:
            raise ValueError(f"{what} runs on Ray: call run_pipeline with ray_hooks (aletheia-testbed pipeline does)")
        if self.start_s is None:
            t = time.perf_counter()
            self.stack.enter_context(self.hooks.session())
            self.start_s = round(time.perf_counter() - t, 2)
        return self.hooks

    def close(self) -> None:
        self.stack.close()


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    tmp.replace(path)


def _merge_problem_rows(paths: list[str]) -> list[dict]:
    rows = []
    for path in paths:
        rows.extend(row for _, row in read_jsonl(path))
    return rows


def _row_id(row: Any) -> str | None:
    if not isinstance(row, dict):
        return None
    return next((str(row[k]) for k in ID_KEYS if row.get(k) not in (None, "")), None)


def _runner_factory(cfg: TestbedConfig, ray: LazyRay) -> Callable:
    if cfg.execution.backend != "ray":
        return lambda: make_runner(cfg.execution)

    return lambda: ray.ensure("execution.backend: ray").sandbox_runner(cfg.execution)


def run_filter(problems: dict, rows: dict, cfg: TestbedConfig, cache: ExecutionCache, runner_factory,
               report: BuildReport) -> tuple[dict[str, Quality], list[Candidate]]:
    """Execute references and mutants; returns per-problem quality and the executed programs
    (generator = the reference generator's name; ``where`` names problem, language and program)."""
    name = cfg.generation.reference.name if cfg.generation.reference else "reference"
    programs: list[Candidate] = []
    for pid, problem in problems.items():
        for lang, ref in sorted(reference_solutions(rows[pid], problem).items()):
            programs.append(Candidate(pid, name, lang, ref, None, f"{pid}|{lang}|reference"))
            for mname, code in mutants_for(rows[pid], problem, lang, ref, cfg.filter.mutants).items():
                programs.append(Candidate(pid, name, lang, code, None, f"{pid}|{lang}|{mname}"))
    stage = BuildReport()
    score_missing(programs, problems, cache, runner_factory, stage)
    report.info["filter_execution"] = stage.info["execution"]
    for cat, items in stage.issues.items():
        report.issues[cat].extend(items)
    quality = {pid: Quality(pid) for pid in problems}
    for p in programs:
        _, lang, what = p.where.rsplit("|", 2)
        (quality[p.problem_id].good if what == "reference" else quality[p.problem_id].bad)[f"{lang}:{what}"] = p.pass_rate
    return quality, programs


def run_pipeline(problem_paths: list[str], out_dir: str, cfg: TestbedConfig,
                 ray_hooks: Optional[RayHooks] = None) -> dict:
    """Run every stage (module docstring); returns the build summary with a ``pipeline`` section.
    Without ``ray_hooks`` only cached generations and ``execution.backend: threads`` work."""
    from aletheia_ray.testbed.build import BuildError, build_testbed

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report, stages, ray = BuildReport(), {}, LazyRay(ray_hooks)
    clock = time.perf_counter()

    def lap(name: str, **extra) -> None:
        nonlocal clock
        now = time.perf_counter()
        stages[name] = {"wall_s": round(now - clock, 2), **extra}
        clock = now
        print(f"testbed pipeline: stage {name} done in {stages[name]['wall_s']} s", file=sys.stderr)

    try:
        merged = out / "problems.jsonl"
        _write_jsonl(merged, _merge_problem_rows(problem_paths))
        rows = {}
        for _, row in read_jsonl(merged):
            rows.setdefault(_row_id(row), row)
        problems = load_problems(merged, cfg.problems, report)
        if cfg.generation.max_problems is not None:
            problems = dict(list(problems.items())[:cfg.generation.max_problems])
        lap("load", problems=len(problems))

        exec_cache = ExecutionCache(cache_path(out, cfg.execution.cache))
        runner_factory = _runner_factory(cfg, ray)
        quality, programs, dropped, unfiltered = {}, [], [], []
        if cfg.filter.enabled or cfg.generation.reference is not None:  # the reference group needs them too
            quality, programs = run_filter(problems, rows, cfg, exec_cache, runner_factory, report)
        if cfg.filter.enabled:
            for pid, q in quality.items():
                verdict = q.verdict(cfg.filter.min_tpr, cfg.filter.min_tnr)
                if verdict == "drop" or (verdict == "unfiltered" and cfg.filter.drop_unfiltered):
                    dropped.append(q.to_dict())
                elif verdict == "unfiltered":
                    unfiltered.append(pid)
        kept = {pid: p for pid, p in problems.items() if pid not in {d["problem_id"] for d in dropped}}
        lap("filter", **report.info.get("filter_execution", {}), dropped=len(dropped), kept=len(kept))

        pools_started = []

        def make_pool(spec: str):
            hooks = ray.ensure("candidate generation (the rollout pool)")
            from aletheia_ray.models import resolve_model_path

            path = resolve_model_path(spec)
            pools_started.append(path)
            return hooks.rollout_pool(path, cfg.generation.rollout, cfg.seed), path

        gen_cache = GenerationCache(cache_path(out, cfg.generation.cache))
        gen_stats = generate_candidates(kept, rows, cfg.generation, cfg.seed, gen_cache, make_pool, report)
        lap("generate", pools_started=len(pools_started),
            engine_calls=sum(s["engine_calls"] for s in gen_stats.values()),
            groups_generated=sum(s["generated"] for s in gen_stats.values()),
            groups_from_cache=sum(s["from_cache"] for s in gen_stats.values()))

        flat = generated_rows(kept, cfg.generation, cfg.seed, gen_cache)
        cands = check_candidates([Candidate(r["problem_id"], r["generator"], r["language"], r["code"], None,
                                            f"{r['problem_id']}|{r['generator']}|{r['language']}|sample {r['sample']}")
                                  for r in flat], kept, report)
        stage = BuildReport()
        scored = score_missing(cands, kept, exec_cache, runner_factory, stage)
        for cat, items in stage.issues.items():
            report.issues[cat].extend(items)
        lap("execute", **stage.info["execution"])

        tiers = {g.name: g.tier for g in cfg.generation.generators}
        ref = cfg.generation.reference
        candidate_rows = [{"problem_id": c.problem_id, "generator": c.generator, "language": c.language,
                           "code": c.code, "pass_rate": c.pass_rate, "tier": tiers[c.generator]} for c in scored]
        if ref is not None:
            tiers[ref.name] = ref.tier
            candidate_rows += [{"problem_id": p.problem_id, "generator": p.generator, "language": p.language,
                                "code": p.code, "pass_rate": p.pass_rate, "tier": ref.tier}
                               for p in programs if p.problem_id in kept and p.pass_rate is not None
                               and (p.where.endswith("|reference") or (ref.include_mutants and p.pass_rate < 1.0))]
        clash = {g: t for g, t in tiers.items() if cfg.generators.tiers.get(g, t) != t}
        if clash:
            raise ValueError(f"generators.tiers disagrees with generation tiers for {clash}")
        _write_jsonl(out / "candidates.jsonl", candidate_rows)
        _write_jsonl(out / "problems_kept.jsonl", [rows[pid] for pid in kept])
        build_cfg = cfg.model_copy(update={"generators": cfg.generators.model_copy(
            update={"tiers": {**cfg.generators.tiers, **tiers}})})
        pipeline_info = {
            "stages": stages, "ray_start_s": ray.start_s, "generation": gen_stats,
            "test_quality": {"enabled": cfg.filter.enabled, "min_tpr": cfg.filter.min_tpr,
                             "min_tnr": cfg.filter.min_tnr, "kept": len(kept), "dropped": dropped,
                             "unfiltered": unfiltered,
                             "per_problem": [q.to_dict() for q in quality.values()]},
            "candidates_written": len(candidate_rows), "issues": {k: v for k, v in sorted(report.issues.items())},
        }
        error = None
        try:
            build_testbed(str(out / "problems_kept.jsonl"), str(out / "candidates.jsonl"), str(out), build_cfg,
                          runner_factory=runner_factory)
        except BuildError as e:
            error = e
        lap("build")
        pipeline_info["ray_start_s"] = ray.start_s
        pipeline_info["total_wall_s"] = round(sum(s["wall_s"] for s in stages.values()), 2)
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        summary["pipeline"] = pipeline_info
        (out / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print("testbed pipeline: " + ", ".join(f"{k} {v['wall_s']} s" for k, v in stages.items())
              + f"; dropped by the test-quality filter: {[d['problem_id'] for d in dropped]}", file=sys.stderr)
        if error is not None:
            raise error
        return summary
    finally:
        ray.close()
