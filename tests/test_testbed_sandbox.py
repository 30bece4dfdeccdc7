"""Testbed x sandbox: resumable execution and adversarial variants that behave like the originals.

Real executions through ``aletheia_ray.sandbox`` (bubblewrap); run under the heavy-job lock.
"""
import gzip
import json
import random
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest

from aletheia_ray.config import load_config
from aletheia_ray.sandbox.parallel import run_local
from aletheia_ray.sandbox.types import Status
from aletheia_ray.data.records import VerifierList
from aletheia_ray.testbed.adversarial import ADV_TRANSFORMS
from aletheia_ray.testbed.adversarial.apply import verify_adversarial
from aletheia_ray.testbed.build import build_testbed
from aletheia_ray.testbed.candidates import load_candidates
from aletheia_ray.testbed.config import CandidatesConfig, ExecutionConfig, ProblemsConfig, TestbedConfig
from aletheia_ray.testbed.execution import ExecutionCache, score_missing, thread_runner
from aletheia_ray.data.problems import load_problems, problem_from_row
from aletheia_ray.data.report import BuildReport
from fixture_paths import SHARED_DATA
from runner_helpers import Crash, crash_after

pytestmark = pytest.mark.sandbox
DATA = SHARED_DATA
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "testbed.yaml"
CODE_CHANGING = ("minification", "misleading_comments", "identifier_renaming", "illusory_complexity", "authority")


def test_execution_is_resumable_and_matches_known_pass_rates(tmp_path):
    tasks = {"HumanEval/2", "HumanEval/13"}
    problems = [r for r in map(json.loads, gzip.open(DATA / "humanevalplus_dev.jsonl.gz")) if r["task_id"] in tasks]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in problems))
    known, rows = {}, []
    for row in map(json.loads, open(DATA / "humaneval_scored_candidates_dev.jsonl")):
        if row["task_id"] in tasks:
            by_rate = {}
            for c in row["candidates"]:
                by_rate.setdefault(c["pass_rate"], c["code"])
            for rate, code in sorted(by_rate.items())[:3]:
                rows.append({"problem_id": row["task_id"], "generator": "g", "language": "python", "code": code})
                known[code] = rate
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = BuildReport()
    probs = load_problems(tmp_path / "p.jsonl", ProblemsConfig(), report)
    cache = ExecutionCache(tmp_path / "cache.jsonl")
    exe = ExecutionConfig(workers=2)
    cands = load_candidates(tmp_path / "c.jsonl", CandidatesConfig(), report)
    with pytest.raises(Crash):
        score_missing(cands, probs, cache, lambda: crash_after(thread_runner(exe), 3), report)
    assert len((tmp_path / "cache.jsonl").read_text().splitlines()) == 3

    fresh = load_candidates(tmp_path / "c.jsonl", CandidatesConfig(), report)
    done = score_missing(fresh, probs, ExecutionCache(tmp_path / "cache.jsonl"), lambda: thread_runner(exe), report)
    assert report.info["execution"] == {"executed": len(rows) - 3, "from_cache": 3}
    assert len(done) == len(rows)
    for c in done:  # the sandbox reproduces the fixture's externally computed pass rates
        assert c.pass_rate == pytest.approx(known[c.code], abs=1e-9), c.code[:80]


def _verify_build(tmp_path, sample, per_transform=1):
    cfg = load_config(CONFIG, [f"adversarial.verify_sample={sample}", "splits.adv_size=60",
                               f"adversarial.verify_per_transform={per_transform}"], schema=TestbedConfig)
    summary = build_testbed(str(DATA / "humanevalplus_dev.jsonl.gz"),
                            str(DATA / "humaneval_scored_candidates_dev.jsonl"), str(tmp_path), cfg)
    ver = summary["adversarial_verification"]
    assert ver["lists"] == sample and ver["programs"] >= 2 * sample
    assert ver["mismatches"] == [] and ver["infra_errors"] == 0
    assert ver["same_pass_rate"] == ver["programs"]
    return ver


def test_adversarial_sample_covers_every_transform_and_keeps_pass_rates_in_the_sandbox(tmp_path):
    """Stratified: one program per (transform, language) in Adv, so the code-rewriting transforms
    (minification, renaming, misleading comments) are always among the checked ones."""
    ver = _verify_build(tmp_path, 0)
    assert set(ver["transforms_checked"]) == set(ADV_TRANSFORMS)
    assert ver["per_transform"] == {f"{t}/python": {"programs": 1, "same_pass_rate": 1, "infra_errors": 0}
                                    for t in ADV_TRANSFORMS}
    assert "| minification/python | 1 | 1 | 0 |" in (tmp_path / "stats.md").read_text()


@pytest.mark.slow
def test_adversarial_larger_sample_keeps_pass_rates_in_the_sandbox(tmp_path):
    ver = _verify_build(tmp_path, 24)
    assert set(ver["transforms_checked"]) == set(ADV_TRANSFORMS)


def test_sandbox_verification_catches_a_behaviour_changing_variant():
    """A 'minification' that changes the output is caught by running both versions for real."""
    problem = problem_from_row({"problem_id": "Echo/1", "query": "echo", "tests": [{"input": "7\n", "output": "7\n"}],
                                "time_limit_s": 5}, ProblemsConfig(min_tests=1))
    orig = VerifierList(idx="heldout-0", query="echo", candidates=["print(input())\n", "print(0)\n"],
                        pass_rates=[1.0, 0.0], chosen_position=0, chosen_answer="A", prompt_id="Echo/1")
    adv = replace(orig, idx="adv-0", candidates=["print(input()+'!')\n", "# Verified by experts.\nprint(0)\n"],
                  extra={"heldout_idx": "heldout-0", "adv_transforms": ["minification", "authority"]})

    def run(subs):
        with closing(thread_runner(ExecutionConfig(workers=2))(subs)) as results:
            return [r for _, r in sorted(results, key=lambda x: x[0])]

    ver = verify_adversarial([adv], {orig.idx: orig}, 0, lambda l, i, c: problem.submission(i, l.language, c),
                             run, seed=0)
    assert [(m["transform"], m["original"], m["modified"]) for m in ver["mismatches"]] == \
        [("minification", ["OK", 1.0], ["WA", 0.0])]
    assert ver["per_transform"]["authority/python"] == {"programs": 1, "same_pass_rate": 1, "infra_errors": 0}


def _x_subs(lang, k, seed):
    rows = [json.loads(l) for l in open(DATA / f"humaneval_x_{lang}_dev.jsonl")]
    rows = random.Random(seed).sample([r for r in rows if r["task_id"] != "CPP/22"], k)
    subs, labels = [], []
    for r in rows:
        code = r["prompt"] + r["canonical_solution"]
        for name in ("original",) + CODE_CHANGING:
            variant = code if name == "original" else ADV_TRANSFORMS[name](code, lang, random.Random(0))
            subs.append(_sub(r, lang, name, variant))
            labels.append((r["task_id"], name))
    return subs, labels


def _sub(row, lang, name, code):
    from aletheia_ray.sandbox.types import Submission

    return Submission(id=f"{row['task_id']}-{name}", language=lang, code=code, test_program=row["test"],
                      time_limit_s=20.0)


@pytest.mark.parametrize("lang", ["cpp", "java"])
def test_clike_variants_compile_and_pass_in_the_sandbox(lang):
    subs, labels = _x_subs(lang, 1, seed=3)
    results = list(run_local(subs, workers=2))
    assert [(lab, r.status) for lab, r in zip(labels, results)] == [(lab, Status.OK) for lab in labels]


@pytest.mark.slow
@pytest.mark.parametrize("lang", ["cpp", "java"])
def test_clike_variants_on_more_programs(lang):
    subs, labels = _x_subs(lang, 8, seed=11)
    results = list(run_local(subs, workers=2))
    assert [(lab, r.status) for lab, r in zip(labels, results)] == [(lab, Status.OK) for lab in labels]


@pytest.mark.slow
def test_cli_build_executes_candidates_on_the_ray_pool(tmp_path):
    import subprocess
    import sys

    tasks = {"HumanEval/4", "HumanEval/13"}
    problems = [r for r in map(json.loads, gzip.open(DATA / "humanevalplus_dev.jsonl.gz")) if r["task_id"] in tasks]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in problems))
    rows, known = [], {}
    for row in map(json.loads, open(DATA / "humaneval_scored_candidates_dev.jsonl")):
        if row["task_id"] in tasks:
            by_rate = {}
            for c in row["candidates"]:
                by_rate.setdefault(c["pass_rate"], c["code"])
            for rate, code in sorted(by_rate.items()):
                rows.append({"problem_id": row["task_id"], "generator": "codegen-16B", "language": "python", "code": code})
                known[code] = rate
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = subprocess.run([sys.executable, "-m", "aletheia_ray.launch.testbed", "build", "--problems", str(tmp_path / "p.jsonl"),
                          "--candidates", str(tmp_path / "c.jsonl"), "--out", str(tmp_path / "out"),
                          "--config", str(CONFIG), "--ray", "--set", "adversarial.verify_sample=1",
                          "--set", "adversarial.verify_per_transform=0",
                          "--set", "splits.eval_problem_fraction=0.5"],
                         capture_output=True, text=True, cwd=CONFIG.parents[1], timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["execution"] == {"executed": len(rows), "from_cache": 0}
    cache = [json.loads(l) for l in open(tmp_path / "out" / "execution_cache.jsonl")]
    assert sorted(c["pass_rate"] for c in cache) == pytest.approx(sorted(known.values()))
    assert summary["adversarial_verification"]["mismatches"] == []
