"""``aletheia-testbed build``: problems + candidates -> Train/Heldout/Strong/Hard/Adv + stats.

Outputs in ``out_dir`` (all deterministic for a seed: no timestamps, sorted keys):
``{split}.jsonl`` and ``{split}.parquet`` in the Aletheia-Bench layout, ``stats.md``,
``summary.json`` (every bad input by id, bucket sizes, contamination check, adversarial
verification) and the execution cache (when candidates had to be executed).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable, Optional

from aletheia_ray.data.lists import save_lists
from aletheia_ray.data.records import VerifierList
from aletheia_ray.testbed import similarity
from aletheia_ray.testbed.adversarial.apply import verify_adversarial
from aletheia_ray.testbed.adversarial.per_modification import make_adv_split
from aletheia_ray.testbed.candidates import check_candidates, load_candidates
from aletheia_ray.testbed.config import TestbedConfig
from aletheia_ray.testbed.execution import ExecutionCache, Runner, make_runner, run_with_progress, score_missing
from aletheia_ray.testbed.lists import BUCKETS, build_lists
from aletheia_ray.data.problems import load_problems
from aletheia_ray.data.report import BuildReport
from aletheia_ray.testbed.splits import contamination, evenness, make_splits
from aletheia_ray.testbed.stats import SPLIT_ORDER, render_stats, split_stats


class BuildError(RuntimeError):
    """The build finished but violates an invariant (contamination, adversarial mismatch) or
    produced no Train or Heldout lists."""


def _empty_split_error(splits: dict, buckets: dict, report: BuildReport, candidates_used: int) -> Optional[str]:
    empty = [n for n in ("train", "heldout") if not splits[n]]
    if not empty:
        return None
    issues = ", ".join(f"{cat}={len(items)}" for cat, items in
                       sorted(report.issues.items(), key=lambda kv: -len(kv[1]))[:4]) or "none"
    return (f"split(s) {' and '.join(empty)} came out empty: {candidates_used} usable candidates, "
            f"weak/easy bucket {buckets['weak/easy']['lists']} lists over "
            f"{buckets['weak/easy']['questions']} problems (Train and Heldout need weak/easy lists on "
            f"both sides of the problem partition); bad inputs: {issues} (see summary.json)")


def _bucket_sizes(lists: list[VerifierList]) -> dict[str, dict]:
    out = {}
    for tier in ("weak", "strong"):
        for bucket in BUCKETS:
            sel = [l for l in lists if l.weak_strong == tier and l.easy_hard == bucket]
            out[f"{tier}/{bucket}"] = {"lists": len(sel), "questions": len({l.prompt_id for l in sel})}
    return out


def build_testbed(problems_path: str, candidates_path: str, out_dir: str, cfg: TestbedConfig,
                  runner_factory: Optional[Callable[[], Runner]] = None) -> dict:
    """Run the whole build; returns the summary (also written to ``out_dir/summary.json``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runner_factory = runner_factory or (lambda: make_runner(cfg.execution))
    report = BuildReport()

    problems = load_problems(problems_path, cfg.problems, report)
    cands = check_candidates(load_candidates(candidates_path, cfg.candidates, report), problems, report)
    cache_path = Path(cfg.execution.cache)
    cache = ExecutionCache(cache_path if cache_path.is_absolute() else out / cache_path)
    cands = score_missing(cands, problems, cache, runner_factory, report)

    all_lists = build_lists(cands, problems, cfg.lists, cfg.generators, cfg.seed, cfg.source, report)
    splits, partition = make_splits(all_lists, cfg.splits, cfg.seed)
    splits["adv"] = make_adv_split(splits["heldout"], cfg.splits.adv_size, cfg.adversarial, cfg.seed, report)
    shared = contamination(splits)

    verification = {"lists": 0, "programs": 0, "same_pass_rate": 0, "infra_errors": 0, "mismatches": [],
                    "per_transform": {}, "transforms_checked": []}
    adv_cfg = cfg.adversarial
    if (adv_cfg.verify_sample or adv_cfg.verify_per_transform) and splits["adv"]:
        def submission_for(lst: VerifierList, sub_id: str, code: str):
            return problems[lst.prompt_id].submission(sub_id, lst.language, code)

        def run(subs):
            results = [None] * len(subs)
            with run_with_progress(runner_factory(), subs, "verify adversarial") as done:
                for i, res in done:
                    results[i] = res
            return results

        originals = {l.idx: l for l in splits["heldout"]}
        verification = verify_adversarial(splits["adv"], originals, adv_cfg.verify_sample,
                                          submission_for, run, cfg.seed, adv_cfg.verify_per_transform)

    for name in SPLIT_ORDER:
        save_lists(splits[name], out / f"{name}.jsonl")
        save_lists(splits[name], out / f"{name}.parquet")

    tokenize = similarity.make_tokenizer(cfg.stats.tokenizer)
    stats = {name: split_stats(splits[name], tokenize, name) for name in SPLIT_ORDER}
    buckets = _bucket_sizes(all_lists)
    note = ("Code length: " + ("tokens of " + cfg.stats.tokenizer if cfg.stats.tokenizer else
            "regex code tokens (identifiers/numbers one token, other non-space characters one each)") +
            ". Similarity: " + similarity.__doc__.split("Similarity of two programs: ")[1].split("\n\n")[0]
            .replace("\n", " ").strip())
    (out / "stats.md").write_text(render_stats(stats, buckets, shared, note, verification), encoding="utf-8")

    report.info.update({
        "seed": cfg.seed, "problems_used": len(problems), "candidates_used": len(cands),
        "buckets": buckets, "problem_partition": partition,
        "splits": {n: {"rows": len(splits[n]), "questions": stats[n]["questions"],
                       "evenness_max_over_min": round(evenness(splits[n]), 3) if splits[n] else None}
                   for n in SPLIT_ORDER},
        "contamination": {"shared_with_train": shared, "clean": not any(shared.values())},
        "adversarial_verification": verification,
    })
    summary = report.to_dict()
    (out / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    report.print_console()
    print(f"testbed: wrote {', '.join(f'{n}={len(splits[n])}' for n in SPLIT_ORDER)} lists to {out}; "
          f"buckets {json.dumps(buckets)}; adversarial verified {verification['same_pass_rate']}/"
          f"{verification['programs']} programs", file=sys.stderr)
    empty = _empty_split_error(splits, buckets, report, len(cands))
    if empty:
        raise BuildError(empty)
    if any(shared.values()):
        raise BuildError(f"problem ids shared between train and evaluation splits: {shared}")
    if verification["mismatches"] and cfg.adversarial.fail_on_mismatch:
        raise BuildError(f"adversarial variants changed behaviour: {verification['mismatches'][:3]}")
    return summary
