"""Testbed failure paths: broken adversarial transforms, forced train/eval overlap, empty splits,
the CLI's default config, the time-limit problem filter, stratified verification and exact balance.

No sandbox: executions go through fake runners (the real-sandbox checks are in
test_testbed_sandbox.py), so this file runs in seconds.
"""
import json
import random
from dataclasses import replace

import pytest

from aletheia_ray.config import load_config
from aletheia_ray.data.lists import load_lists
from aletheia_ray.data.records import VerifierList
from aletheia_ray.sandbox.types import Status, SubmissionResult
from aletheia_ray.testbed import build as build_mod
from aletheia_ray.testbed.adversarial import ADV_TRANSFORMS
from aletheia_ray.testbed.adversarial.apply import verify_adversarial
from aletheia_ray.testbed.adversarial.registry import AdvTransform
from aletheia_ray.testbed.build import BuildError, build_testbed
from aletheia_ray.testbed.config import ProblemsConfig, SplitsConfig, TestbedConfig
from aletheia_ray.data.problems import load_problems
from aletheia_ray.data.report import BuildReport
from aletheia_ray.testbed.splits import balanced_sample, evenness, make_splits
from aletheia_ray.launch.testbed import DEFAULT_CONFIG, main
from fixture_paths import REPO_ROOT, SHARED_DATA

PROBLEMS = SHARED_DATA / "humanevalplus_dev.jsonl.gz"
CANDIDATES = SHARED_DATA / "humaneval_scored_candidates_dev.jsonl"
CONFIG = REPO_ROOT / "configs" / "testbed.yaml"

MARK = "__BROKEN__ = 1"
# combined Adv mode: splits.adv_size lists with one positive + one negative transform each (these
# tests are about failure paths, not the per-modification Adv sets, which build 12x more lists)
FAST = ["--set", "adversarial.verify_sample=0", "--set", "adversarial.verify_per_transform=0",
        "--set", "splits.adv_size=24", "--set", "adversarial.mode=combined"]


def _fake_runner(subs):
    """Every program 'passes half its tests', unless a broken transform marked it."""
    for i, s in enumerate(subs):
        yield i, SubmissionResult(id=s.id, status=Status.WA if MARK in s.code else Status.OK,
                                  pass_rate=0.0 if MARK in s.code else 0.5)


@pytest.fixture
def broken_minification(monkeypatch):
    """A behaviour-changing 'minification' (the build cannot tell until it runs the variant)."""
    fn = lambda code, language, rng: code + "\n" + MARK + "\n"  # noqa: E731
    monkeypatch.setitem(ADV_TRANSFORMS, "minification", AdvTransform("minification", "negative", "test", fn))


def _cfg(*overrides):
    return load_config(CONFIG, ["adversarial.verify_sample=0", "adversarial.verify_per_transform=1",
                                "splits.adv_size=24", "adversarial.mode=combined", *overrides], schema=TestbedConfig)


def _args(out, *extra):
    return ["build", "--problems", str(PROBLEMS), "--candidates", str(CANDIDATES), "--out", str(out), *extra]


def test_verification_catches_a_behaviour_changing_transform(tmp_path, broken_minification):
    with pytest.raises(BuildError, match="adversarial variants changed behaviour.*minification"):
        build_testbed(str(PROBLEMS), str(CANDIDATES), str(tmp_path / "a"), _cfg(), lambda: _fake_runner)
    summary = build_testbed(str(PROBLEMS), str(CANDIDATES), str(tmp_path / "b"),
                            _cfg("adversarial.fail_on_mismatch=false"), lambda: _fake_runner)
    ver = summary["adversarial_verification"]
    assert ver["mismatches"] and {m["transform"] for m in ver["mismatches"]} == {"minification"}
    assert all(m["original"] == ["OK", 0.5] and m["modified"] == ["WA", 0.0] for m in ver["mismatches"])
    per = ver["per_transform"]
    assert per["minification/python"]["same_pass_rate"] == 0
    assert all(v["same_pass_rate"] == v["programs"] for k, v in per.items() if k != "minification/python")


def test_cli_exits_1_on_adversarial_mismatch(tmp_path, monkeypatch, broken_minification, capsys):
    monkeypatch.setattr(build_mod, "make_runner", lambda cfg: _fake_runner)
    code = main(_args(tmp_path, "--set", "adversarial.verify_per_transform=1", "--set", "splits.adv_size=24"))
    assert code == 1 and "changed behaviour" in capsys.readouterr().err


def test_cli_exits_1_on_train_eval_overlap(tmp_path, monkeypatch, capsys):
    def leaky_splits(lists, cfg, seed):  # a split bug that copies one training list into Hard
        splits, partition = make_splits(lists, cfg, seed)
        splits["hard"] = splits["hard"] + [replace(splits["train"][0], idx="hard-leak")]
        return splits, partition

    monkeypatch.setattr(build_mod, "make_splits", leaky_splits)
    assert main(_args(tmp_path, *FAST)) == 1
    leaked = load_lists(tmp_path / "train.jsonl")[0].prompt_id
    assert f"'hard': ['{leaked}']" in capsys.readouterr().err
    assert json.loads((tmp_path / "summary.json").read_text())["contamination"]["clean"] is False


def test_cli_defaults_to_the_repo_config_not_the_cwd(tmp_path, monkeypatch):
    assert DEFAULT_CONFIG == CONFIG.resolve()
    monkeypatch.chdir(tmp_path)  # no configs/ here
    assert main(_args(tmp_path / "out", *FAST)) == 0
    assert len(load_lists(tmp_path / "out" / "train.jsonl")) > 100


def test_empty_train_or_heldout_fails_the_build_naming_why(tmp_path, capsys):
    (tmp_path / "defaults.yaml").write_text("seed: 0\n")  # built-in defaults: no default_generator
    assert main(_args(tmp_path / "out", "--config", str(tmp_path / "defaults.yaml"), *FAST)) == 1
    err = capsys.readouterr().err
    assert "train and heldout came out empty" in err and "bad_candidate_row=" in err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())  # written before failing
    assert summary["splits"]["train"]["rows"] == 0 and summary["issues"]["bad_candidate_row"]


def test_max_time_limit_filter_reports_slow_problems(tmp_path):
    rows = [{"problem_id": f"T/{t}", "query": "echo", "tests": [{"input": "1", "output": "1"}] * 5,
             **({"time_limit_s": t} if t else {})} for t in (1, 5, 20, None)]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = BuildReport()
    kept = load_problems(tmp_path / "p.jsonl", ProblemsConfig(max_time_limit_s=10), report)
    assert sorted(kept) == ["T/1", "T/5", "T/None"]  # no time_limit_s: the default 10 s, not above 10
    assert kept["T/None"].time_limit_s == 10.0
    assert report.ids("filtered_time_limit") == ["T/20"]
    assert "20.0s > problems.max_time_limit_s=10" in report.issues["filtered_time_limit"][0]["message"]
    unfiltered = load_problems(tmp_path / "p.jsonl", ProblemsConfig(), BuildReport())
    assert sorted(unfiltered) == sorted(r["problem_id"] for r in rows)


def _adv(n, transforms, language="python"):
    lst = VerifierList(idx=f"adv-{n}", query="q", candidates=["a", "b"], pass_rates=[1.0, 0.0], chosen_position=0,
                       chosen_answer="A", language=language, prompt_id=f"P{n}",
                       extra={"heldout_idx": f"h-{n}", "adv_transforms": transforms})
    return lst, replace(lst, idx=f"h-{n}")


def test_verification_sample_covers_every_transform_and_language():
    pairs = [_adv(n, ["minification", "authority"]) for n in range(40)]
    pairs += [_adv(40, ["identifier_renaming", "bandwagon"]), _adv(41, ["misleading_comments", "authority"], "cpp")]
    adv, orig = [a for a, _ in pairs], {o.idx: o for _, o in pairs}
    run = lambda subs: [SubmissionResult(id=s.id, status=Status.OK, pass_rate=1.0) for s in subs]  # noqa: E731
    sub = lambda lst, sid, code: type("S", (), {"id": sid, "code": code})()  # noqa: E731
    ver = verify_adversarial(adv, orig, 0, sub, run, seed=0, per_transform=1)
    assert set(ver["per_transform"]) == {"minification/python", "authority/python", "identifier_renaming/python",
                                         "bandwagon/python", "misleading_comments/cpp", "authority/cpp"}
    assert all(v["programs"] == 1 for v in ver["per_transform"].values()) and ver["programs"] == 6
    ver = verify_adversarial(adv, orig, 3, sub, run, seed=0, per_transform=1)
    assert ver["lists"] == 3 and 6 <= ver["programs"] <= 12 and ver["mismatches"] == []


def test_exact_balance_evens_eval_splits_that_take_the_whole_pool():
    rng = random.Random(0)
    lists = []
    for n in range(200):  # 4 candidates twice as common as 2 or 3
        k = (2, 3, 4, 4)[n % 4]
        rates = [1.0] + [0.1 * j for j in range(k - 1)]
        lists.append(VerifierList(idx=f"l{n}", query="q", candidates=[f"c{j}" for j in range(k)], pass_rates=rates,
                                  chosen_position=0, chosen_answer="A", prompt_id=f"P{n % 25}",
                                  weak_strong="weak", easy_hard="easy", num_candidates=k))
    big = dict(train_size=10_000, heldout_size=10_000)
    loose, _ = make_splits(lists, SplitsConfig(**big), 0)
    exact, _ = make_splits(lists, SplitsConfig(**big, balance="exact"), 0)
    assert evenness(loose["heldout"]) > 1.5  # the pool's proportions (about 1:1:2)
    assert evenness(exact["heldout"]) == 1.0 and evenness(loose["train"]) == evenness(exact["train"])
    assert len(balanced_sample(lists, 30, rng)) == 30 and evenness(balanced_sample(lists, 30, rng)) == 1.0
