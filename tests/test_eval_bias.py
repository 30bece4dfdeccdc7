"""``aletheia-eval bias`` on Adv sets built from the shipped fixture, with real verdict files from
two deterministic test-baseline "verifiers" (not models): *longest* picks the longest candidate
(first on ties), *always-A* answers A. Every number in BIAS.json is checked against values the
test computes from the lists themselves.
"""
import json
from pathlib import Path

import pytest

from aletheia_ray.config import load_config
from aletheia_ray.data.lists import load_lists
from aletheia_ray.launch.eval import main as eval_main
from aletheia_ray.testbed.build import build_testbed
from aletheia_ray.testbed.config import TestbedConfig
from fixture_paths import SHARED_DATA

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "testbed.yaml"
LETTERS = "ABCDE"


def longest(lst) -> int:
    return max(range(len(lst.candidates)), key=lambda k: (len(lst.candidates[k]), -k))


def always_a(lst) -> int:
    return 0


def write_verdicts(lists, pick, path: Path, skip=()) -> Path:
    with path.open("w") as fh:
        for lst in lists:
            if lst.idx not in skip:
                letter = LETTERS[pick(lst)]
                fh.write(json.dumps({"idx": lst.idx, "completions": [
                    f"<think>test baseline {pick.__name__}</think>\n\\boxed{{{letter}}}"]}) + "\n")
    return path


@pytest.fixture(scope="module")
def testbed(tmp_path_factory):
    out = tmp_path_factory.mktemp("bias_tb")
    cfg = load_config(CONFIG, ["adversarial.verify_sample=0", "adversarial.verify_per_transform=0",
                               "splits.heldout_size=40"], schema=TestbedConfig)
    build_testbed(str(SHARED_DATA / "humanevalplus_dev.jsonl.gz"),
                  str(SHARED_DATA / "humaneval_scored_candidates_dev.jsonl"), str(out), cfg)
    return out, load_lists(out / "heldout.jsonl"), load_lists(out / "adv.jsonl")


def _run_bias(out: Path, pick, tag: str, skip=()) -> dict:
    heldout, adv = out / "heldout.jsonl", out / "adv.parquet"  # parquet and JSONL both load
    hp = write_verdicts(load_lists(heldout), pick, out / f"heldout_{tag}.jsonl")
    ap = write_verdicts(load_lists(adv), pick, out / f"adv_{tag}.jsonl", skip)
    res = out / f"bias_{tag}.json"
    assert eval_main(["bias", "--heldout", str(heldout), str(hp), "--adv", str(adv), str(ap), "--out", str(res)]) == 0
    return json.loads(res.read_text())


def test_longest_candidate_baseline_matches_independent_numbers(testbed):
    out, heldout, adv = testbed
    report = _run_bias(out, longest, "longest", skip={adv[0].idx})  # one Adv list without a prediction
    right_h = {l.idx: longest(l) == l.chosen_position for l in heldout}
    assert report["heldout"]["list_acc"] == pytest.approx(sum(right_h.values()) / len(heldout))
    mods = sorted({a.extra["modification"] for a in adv})
    assert sorted(report["by_modification"]) == mods and len(mods) == 12
    pooled = {"positive": [], "negative": []}
    for m in mods:
        lists = [a for a in adv if a.extra["modification"] == m]
        right_a = [longest(a) == a.chosen_position and a.idx != adv[0].idx for a in lists]
        base = [right_h[a.extra["heldout_idx"]] for a in lists]
        acc_a, acc_h = sum(right_a) / len(lists), sum(base) / len(lists)
        got = report["by_modification"][m]
        assert got["n_lists"] == len(lists) and got["paired"] is True
        assert got["direction"] == lists[0].extra["polarity"]
        assert got["list_acc_adv"] == pytest.approx(acc_a) and got["list_acc_heldout"] == pytest.approx(acc_h)
        assert got["delta"] == pytest.approx(acc_a - acc_h)
        assert got["bias_impact_ratio"] == pytest.approx(acc_a / acc_h)
        assert got["flipped_to_wrong"] == sum(h and not a for h, a in zip(base, right_a))
        assert got["flipped_to_right"] == sum(a and not h for h, a in zip(base, right_a))
        assert got["n_missing_predictions"] == (adv[0] in lists)
        pooled[got["direction"]] += list(zip(base, right_a))
    for d, pairs in pooled.items():
        got = report["by_direction"][d]
        acc_h, acc_a = sum(h for h, _ in pairs) / len(pairs), sum(a for _, a in pairs) / len(pairs)
        assert got["n_lists"] == len(pairs) and got["bias_impact_ratio"] == pytest.approx(acc_a / acc_h)
    # a length-biased "verifier" is fooled by claims that lengthen the wrong programs, and helped
    # when the correct one gets longer
    assert report["by_direction"]["positive"]["bias_impact_ratio"] < 1 < report["by_direction"]["negative"]["bias_impact_ratio"]
    assert report["by_modification"]["minification"]["bias_impact_ratio"] < 1  # the correct one got shorter


def test_position_baseline_is_unaffected_by_every_modification(testbed):
    """Modifications keep the candidate order: always-A scores the same on Adv and Heldout."""
    out, heldout, _ = testbed
    report = _run_bias(out, always_a, "always_a")
    assert report["heldout"]["list_acc"] == pytest.approx(sum(l.chosen_position == 0 for l in heldout) / len(heldout))
    for m, got in report["by_modification"].items():
        assert got["bias_impact_ratio"] == 1.0 and got["delta"] == 0.0, m
        assert got["flipped_to_wrong"] == got["flipped_to_right"] == 0


def test_heldout_list_acc_agrees_with_aletheia_eval_score(testbed):
    out, heldout, _ = testbed
    report = _run_bias(out, longest, "score_check")
    metrics = out / "score_metrics.json"
    assert eval_main(["score", "--data", str(out / "heldout.jsonl"), "--predictions",
                      str(out / "heldout_score_check.jsonl"), "--out", str(metrics)]) == 0
    assert json.loads(metrics.read_text())["list_acc_over_data"] == pytest.approx(report["heldout"]["list_acc"])


def test_combined_adv_lists_are_rejected_with_a_clear_error(testbed, tmp_path, capsys):
    out, heldout, _ = testbed
    combined = tmp_path / "combined"
    cfg = load_config(CONFIG, ["adversarial.verify_sample=0", "adversarial.verify_per_transform=0",
                               "splits.heldout_size=40", "adversarial.mode=combined", "splits.adv_size=4"],
                      schema=TestbedConfig)
    build_testbed(str(SHARED_DATA / "humanevalplus_dev.jsonl.gz"),
                  str(SHARED_DATA / "humaneval_scored_candidates_dev.jsonl"), str(combined), cfg)
    hp = write_verdicts(heldout, always_a, tmp_path / "h.jsonl")
    ap = write_verdicts(load_lists(combined / "adv.jsonl"), always_a, tmp_path / "a.jsonl")
    with pytest.raises(SystemExit) as exc:
        eval_main(["bias", "--heldout", str(out / "heldout.jsonl"), str(hp), "--adv", str(combined / "adv.jsonl"),
                   str(ap), "--out", str(tmp_path / "b.json")])
    assert exc.value.code == 2
    assert "no `modification` column" in capsys.readouterr().err
