"""DPO pairs from sampled verifier outputs (real fixture lists; completions written here)."""
import json
from collections import Counter

import pytest

from aletheia_ray.data.lists import load_lists, save_lists
from aletheia_ray.testbed.dpo import build_dpo_pairs
from aletheia_ray.launch.testbed import main as cli_main
from fixture_paths import SHARED_DATA

LISTS = SHARED_DATA / "humaneval_lists_dev.jsonl"
MODELS = ("qwen-1.5b", "qwen-7b", "qwen-14b")


def _verdict(letter):
    return f"<think>compare the candidates</think>\\boxed{{{letter}}}"


@pytest.fixture()
def data(tmp_path):
    lists = load_lists(LISTS)[:12]
    save_lists(lists, tmp_path / "train.jsonl")
    rows = []
    for n, lst in enumerate(lists):
        wrong = next(c for c in "ABCDE"[: lst.num_candidates] if c != lst.chosen_answer)
        rows.append({"idx": lst.idx, "model": MODELS[n % 3], "completion": _verdict(lst.chosen_answer)})
        for m in MODELS:  # two wrong verdicts and one format violation per model
            rows += [{"idx": lst.idx, "model": m, "completion": _verdict(wrong)},
                     {"idx": lst.idx, "model": m, "completion": _verdict(wrong) + " "},
                     {"idx": lst.idx, "model": m, "completion": "no think tag \\boxed{A}"}]
    rows += [{"idx": lists[0].idx, "model": "qwen-7b", "completion": _verdict(lists[0].chosen_answer)}]
    # a list with only correct samples gives no pair
    rows = [r for r in rows if r["idx"] != lists[-1].idx] + [
        {"idx": lists[-1].idx, "model": "qwen-7b", "completion": _verdict(lists[-1].chosen_answer)}]
    with open(tmp_path / "samples.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return tmp_path, lists


def test_pairs_prefer_correct_verdicts_and_spread_rejected_over_models(data):
    tmp, lists = data
    summary = build_dpo_pairs(tmp / "train.jsonl", tmp / "samples.jsonl", tmp / "dpo.jsonl", pairs_per_list=3)
    pairs = [json.loads(l) for l in open(tmp / "dpo.jsonl")]
    assert summary["pairs"] == len(pairs) == 11 * 3
    assert summary["lists_without_rejected"] == [lists[-1].idx]
    by_idx = {l.idx: l for l in lists}
    for p in pairs:
        answer = by_idx[p["list_idx"]].chosen_answer
        assert p["chosen"].endswith(f"\\boxed{{{answer}}}")
        if p["rejected_reward"] == 0.0:  # parseable, wrong letter
            assert not p["rejected"].strip().endswith(f"\\boxed{{{answer}}}") and p["rejected_reason"] == ""
        else:  # format violation (no </think>), whatever its letter
            assert p["rejected_reward"] == -1.0 and "think" in p["rejected_reason"]
    for idx in {p["list_idx"] for p in pairs}:  # one rejected response per model per list
        assert sorted(p["rejected_model"] for p in pairs if p["list_idx"] == idx) == sorted(MODELS)
    assert set(Counter(p["rejected_model"] for p in pairs).values()) == {11}


def test_rotation_spreads_models_when_fewer_pairs_than_models(data):
    tmp, _ = data
    summary = build_dpo_pairs(tmp / "train.jsonl", tmp / "samples.jsonl", tmp / "dpo.jsonl", pairs_per_list=1)
    counts = summary["rejected_per_model"]
    assert sum(counts.values()) == 11 and max(counts.values()) - min(counts.values()) <= 1


def test_unknown_idx_is_an_error_naming_the_line(data):
    tmp, _ = data
    with open(tmp / "samples.jsonl", "a") as f:
        f.write(json.dumps({"idx": "nope", "model": "m", "completion": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"samples.jsonl: line \d+"):
        build_dpo_pairs(tmp / "train.jsonl", tmp / "samples.jsonl", tmp / "dpo.jsonl")


def test_cli_dpo(data):
    tmp, _ = data
    rc = cli_main(["dpo", "--lists", str(tmp / "train.jsonl"), "--samples", str(tmp / "samples.jsonl"),
                   "--out", str(tmp / "cli.jsonl"), "--set", "dpo_pairs_per_list=2"])
    assert rc == 0 and len((tmp / "cli.jsonl").read_text().splitlines()) == 22
