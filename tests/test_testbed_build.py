"""Testbed build from the real HumanEval fixtures: invariants, determinism, bad-input reports.

Builds use the fixture's known pass rates (no sandbox; adversarial sandbox checks live in
test_testbed_sandbox.py), so this file runs in seconds.
"""
import gzip
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from aletheia_ray.config import load_config
from aletheia_ray.data.lists import load_lists
from aletheia_ray.testbed.adversarial import ADV_TRANSFORMS
from aletheia_ray.testbed.build import build_testbed
from aletheia_ray.testbed.config import TestbedConfig
from fixture_paths import SHARED_DATA

DATA = SHARED_DATA
PROBLEMS = DATA / "humanevalplus_dev.jsonl.gz"
CANDIDATES = DATA / "humaneval_scored_candidates_dev.jsonl"
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "testbed.yaml"
SPLITS = ("train", "heldout", "strong", "hard", "adv")
OUTPUTS = [f"{s}.{ext}" for s in SPLITS for ext in ("jsonl", "parquet")] + ["stats.md", "summary.json"]


def _cfg(*overrides):  # these tests cover adversarial.mode=combined; per_modification (the default):
    # tests/test_testbed_adversarial_per_modification.py
    return load_config(CONFIG, ["adversarial.verify_sample=0", "adversarial.verify_per_transform=0",
                                "adversarial.mode=combined", *overrides], schema=TestbedConfig)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("tb") / "a"
    summary = build_testbed(str(PROBLEMS), str(CANDIDATES), str(out), _cfg())
    return out, summary


def test_every_split_loads_back_and_keeps_list_invariants(built):
    out, _ = built
    assert (out / "strong.jsonl").read_text() == ""  # one generator in the fixture: no Strong lists
    for ext in ("jsonl", "parquet"):
        assert load_lists(out / f"strong.{ext}", allow_empty=True) == []
    empty, full = pq.read_schema(out / "strong.parquet"), pq.read_schema(out / "heldout.parquet")
    assert pq.read_metadata(out / "strong.parquet").num_rows == 0 and "pass_rates" in empty.names
    for name in empty.names:  # zero rows, but the layout's columns with the same types as a filled split
        assert empty.field(name).type == full.field(name).type, name
    for split in ("train", "heldout", "hard", "adv"):
        lists = load_lists(out / f"{split}.jsonl")  # validates: one 1.0, letters, 2-5 candidates
        assert [l.to_row() for l in lists] == [l.to_row() for l in load_lists(out / f"{split}.parquet")]
        for l in lists:
            assert 2 <= l.num_candidates == len(l.candidates) <= 5
            assert len(set(l.pass_rates)) == len(l.pass_rates)
            assert l.pass_rates.count(1.0) == 1 and "ABCDE"[l.pass_rates.index(1.0)] == l.chosen_answer
            assert l.generator == "codegen-16B" and l.language == "python"
            wrong = [r for r in l.pass_rates if r < 1.0]
            lo, hi = (0.0, 0.5) if l.easy_hard == "easy" else (0.7, 0.9)
            assert all(lo <= r <= hi for r in wrong), (split, l.idx, l.pass_rates)
    assert {l.easy_hard for l in load_lists(out / "hard.jsonl")} == {"hard"}
    assert {l.easy_hard for l in load_lists(out / "heldout.jsonl")} == {"easy"}


def test_no_problem_in_train_and_evaluation(built):
    out, summary = built
    train = {l.prompt_id for l in load_lists(out / "train.jsonl")}
    assert len(train) > 20
    for split in ("heldout", "hard", "adv"):
        ids = {l.prompt_id for l in load_lists(out / f"{split}.jsonl")}
        assert ids and not ids & train
    assert summary["contamination"]["clean"] is True


def test_lengths_are_spread_evenly(built):
    out, summary = built
    heldout = load_lists(out / "heldout.jsonl")
    counts = {n: sum(l.num_candidates == n for l in heldout) for n in (2, 3, 4, 5)}
    assert all(c > 0 for c in counts.values())
    assert summary["splits"]["train"]["rows"] > 100


def test_small_target_size_is_exactly_even_over_lengths(tmp_path):
    build_testbed(str(PROBLEMS), str(CANDIDATES), str(tmp_path), _cfg("splits.heldout_size=40", "splits.adv_size=8"))
    heldout = load_lists(tmp_path / "heldout.jsonl")
    assert len(heldout) == 40
    assert sorted(sum(l.num_candidates == n for l in heldout) for n in (2, 3, 4, 5)) == [10, 10, 10, 10]
    assert len({l.prompt_id for l in heldout}) >= 10  # round-robin over problems, not one problem
    assert len(load_lists(tmp_path / "adv.jsonl")) == 8


def test_adv_lists_modify_programs_but_keep_answers(built):
    out, _ = built
    heldout = {l.idx: l for l in load_lists(out / "heldout.jsonl")}
    adv = load_lists(out / "adv.jsonl")
    assert adv
    used = set()
    for a in adv:
        h = heldout[a.extra["heldout_idx"]]
        assert a.pass_rates == h.pass_rates and a.chosen_answer == h.chosen_answer
        for code, orig, rate, name in zip(a.candidates, h.candidates, a.pass_rates, a.extra["adv_transforms"]):
            assert ADV_TRANSFORMS[name].polarity == ("negative" if rate == 1.0 else "positive")
            assert code != orig
            used.add(name)
    assert used == set(ADV_TRANSFORMS)  # every transform appears in the Adv split


def test_stats_md_has_table2_columns_and_buckets(built):
    out, summary = built
    text = (out / "stats.md").read_text()
    assert "| split | #rows | #questions | mean code length (tokens) | mean within-list similarity |" in text
    train_rows = summary["splits"]["train"]["rows"]
    assert f"| train | {train_rows} |" in text
    assert "| strong | easy | 0 | 0 |" in text  # the fixture has one (weak) generator: reported, not faked
    assert "SequenceMatcher" in text
    assert summary["buckets"]["weak/easy"]["lists"] > summary["buckets"]["weak/hard"]["lists"] > 0


def test_same_seed_is_byte_identical_and_other_seed_differs(built, tmp_path):
    out, _ = built
    build_testbed(str(PROBLEMS), str(CANDIDATES), str(tmp_path / "same"), _cfg())
    build_testbed(str(PROBLEMS), str(CANDIDATES), str(tmp_path / "other"), _cfg("seed=1"))
    for name in OUTPUTS:
        assert (out / name).read_bytes() == (tmp_path / "same" / name).read_bytes(), name
    assert (out / "train.jsonl").read_bytes() != (tmp_path / "other" / "train.jsonl").read_bytes()
    assert (out / "train.parquet").read_bytes() != (tmp_path / "other" / "train.parquet").read_bytes()


def test_second_generator_mapped_to_strong_fills_the_strong_split(tmp_path):
    """The fixture has one generator; the same real programs under a second generator name mapped
    to the strong tier exercise the Weak/Strong routing (documented test set-up, not real data)."""
    flat = tmp_path / "two_generators.jsonl"
    with open(flat, "w") as f:
        for line in open(CANDIDATES):
            row = json.loads(line)
            for gen in ("codegen-16B", "codegen-16B-as-strong"):
                for c in row["candidates"]:
                    f.write(json.dumps({"problem_id": row["task_id"], "generator": gen, "language": "python",
                                        "code": c["code"], "pass_rate": c["pass_rate"]}) + "\n")
    cfg = _cfg("generators.tiers.codegen-16B-as-strong=strong")
    summary = build_testbed(str(PROBLEMS), str(flat), str(tmp_path / "out"), cfg)
    strong = load_lists(tmp_path / "out" / "strong.jsonl")
    train_ids = {l.prompt_id for l in load_lists(tmp_path / "out" / "train.jsonl")}
    assert strong and {l.weak_strong for l in strong} == {"strong"}
    assert {l.generator for l in strong} == {"codegen-16B-as-strong"}
    assert not {l.prompt_id for l in strong} & train_ids
    assert summary["buckets"]["strong/easy"]["lists"] == summary["buckets"]["weak/easy"]["lists"]


def test_bad_inputs_are_reported_by_id(tmp_path, capsys):
    rows = [json.loads(l) for l in gzip.open(PROBLEMS)][:6]
    rows.append({"problem_id": "NoTests/1", "query": "print hello"})
    rows.append({"problem_id": "Few/1", "query": "echo", "tests": [{"input": "1", "output": "1"}]})
    with open(tmp_path / "p.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    cands = [json.loads(l) for l in open(CANDIDATES)][:6]
    extra = [{"problem_id": "Ghost/7", "generator": "g", "language": "python", "code": "x=1", "pass_rate": 1.0},
             {"problem_id": "HumanEval/0", "generator": "g", "language": "rust", "code": "fn main(){}", "pass_rate": 1.0},
             {"problem_id": "HumanEval/1", "generator": "g", "language": "python", "code": "", "pass_rate": 1.0},
             {"problem_id": "HumanEval/2", "generator": "unmapped-gen", "language": "python", "code": "y=2",
              "pass_rate": 0.5}]
    with open(tmp_path / "c.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in cands + extra)
    summary = build_testbed(str(tmp_path / "p.jsonl"), str(tmp_path / "c.jsonl"), str(tmp_path / "out"),
                            _cfg("generators.default_tier=null", "generators.tiers.g=weak"))
    issues = summary["issues"]
    assert [i["id"] for i in issues["problem_without_tests"]] == ["NoTests/1"]
    assert [i["id"] for i in issues["filtered_few_tests"]] == ["Few/1"]
    assert [i["id"] for i in issues["unknown_problem"]] == ["Ghost/7"]
    assert "rust" in issues["unsupported_language"][0]["message"]
    assert "code missing or empty" in issues["bad_candidate_row"][0]["message"]
    assert [i["id"] for i in issues["generator_without_tier"]] == ["unmapped-gen"]
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert on_disk["issues"] == issues
    err = capsys.readouterr().err
    assert "unknown_problem: 1 -- Ghost/7" in err and "problem_without_tests: 1 -- NoTests/1" in err


def test_cli_build_and_config_errors(tmp_path):
    import subprocess
    import sys

    base = [sys.executable, "-m", "aletheia_ray.launch.testbed", "build", "--problems", str(PROBLEMS),
            "--candidates", str(CANDIDATES), "--out", str(tmp_path / "cli"), "--config", str(CONFIG)]
    run = subprocess.run(base + ["--set", "adversarial.verify_sample=0", "--set", "adversarial.verify_per_transform=0",
                                 "--set", "splits.train_size=50"],
                         capture_output=True, text=True, cwd=CONFIG.parents[1], timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(load_lists(tmp_path / "cli" / "train.jsonl")) == 50
    assert "wrote train=50" in run.stderr
    bad = subprocess.run(base + ["--set", "splits.trian_size=5"], capture_output=True, text=True,
                         cwd=CONFIG.parents[1], timeout=300)
    assert bad.returncode == 2 and "splits.trian_size" in bad.stderr and "train_size" in bad.stderr
    bad_name = subprocess.run(base + ["--set", "adversarial.positive=[flattery]"],
                              capture_output=True, text=True, cwd=CONFIG.parents[1], timeout=300)
    assert bad_name.returncode == 2 and "'flattery' is not a positive transform" in bad_name.stderr
