"""Adv split as in the paper (adversarial.mode: per_modification, the default): every configured
modification applied to every Heldout list of a real fixture build, direction recorded per list.

Known pass rates from the fixture (no sandbox); the sandbox re-run of modified programs is the
same verification as the combined mode (tests/test_testbed_failures.py, test_testbed_sandbox.py).
"""
from pathlib import Path

import pytest

from aletheia_ray.config import load_config
from aletheia_ray.data.lists import load_lists
from aletheia_ray.data.records import VerifierList
from aletheia_ray.data.report import BuildReport
from aletheia_ray.testbed.adversarial import ADV_TRANSFORMS
from aletheia_ray.testbed.adversarial.per_modification import make_adversarial_per_modification
from aletheia_ray.testbed.build import build_testbed
from aletheia_ray.testbed.config import TestbedConfig
from fixture_paths import SHARED_DATA

PROBLEMS = SHARED_DATA / "humanevalplus_dev.jsonl.gz"
CANDIDATES = SHARED_DATA / "humaneval_scored_candidates_dev.jsonl"
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "testbed.yaml"
FAST = ["adversarial.verify_sample=0", "adversarial.verify_per_transform=0", "splits.heldout_size=24"]


def _cfg(*overrides):
    return load_config(CONFIG, [*FAST, *overrides], schema=TestbedConfig)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("tb_permod")
    cfg = _cfg()
    assert cfg.adversarial.mode == "per_modification"  # the default, as the paper
    summary = build_testbed(str(PROBLEMS), str(CANDIDATES), str(out), cfg)
    return out, summary, cfg


def test_every_modification_is_applied_to_every_heldout_list(built):
    out, summary, cfg = built
    heldout = {l.idx: l for l in load_lists(out / "heldout.jsonl")}
    adv = load_lists(out / "adv.jsonl")
    assert len(heldout) == 24
    assert [l.to_row() for l in adv] == [l.to_row() for l in load_lists(out / "adv.parquet")]
    modifications = cfg.adversarial.positive + cfg.adversarial.negative
    counts = summary["adversarial"]["per_modification"]
    assert summary["adversarial"]["mode"] == "per_modification" and list(counts) == modifications
    assert summary["adversarial"]["heldout_lists_used"] == 24
    assert len({a.idx for a in adv}) == len(adv) == sum(c["lists"] for c in counts.values())
    for name in modifications:
        sources = [a.extra["heldout_idx"] for a in adv if a.extra["modification"] == name]
        assert len(sources) == len(set(sources)) == counts[name]["lists"]
        assert counts[name]["lists"] + counts[name]["not_applicable"] == 24
        assert set(sources) <= set(heldout)
        if ADV_TRANSFORMS[name].family == "statement":  # a comment always applies: every list
            assert set(sources) == set(heldout), name
    assert sum(c["lists"] for c in counts.values()) >= 24 * len(modifications) - 24  # few not applicable


def test_direction_is_recorded_and_only_the_targets_change(built):
    out, _, _ = built
    heldout = {l.idx: l for l in load_lists(out / "heldout.jsonl")}
    for a in load_lists(out / "adv.jsonl"):
        h = heldout[a.extra["heldout_idx"]]
        name, polarity = a.extra["modification"], a.extra["polarity"]
        assert polarity == ADV_TRANSFORMS[name].polarity
        assert a.extra["modified_candidates"] == {"positive": "rejected", "negative": "chosen"}[polarity]
        assert (a.pass_rates, a.chosen_position, a.chosen_answer, a.prompt_id, a.query) == \
               (h.pass_rates, h.chosen_position, h.chosen_answer, h.prompt_id, h.query)
        changed = 0
        for k, (code, orig, applied) in enumerate(zip(a.candidates, h.candidates, a.extra["adv_transforms"])):
            target = (k == h.chosen_position) == (polarity == "negative")
            if not target:
                assert code == orig and applied == "none", (a.idx, k)
            else:
                assert (code != orig) == (applied == name), (a.idx, k)
                changed += code != orig
        assert changed >= 1
        if polarity == "negative":
            assert changed == 1


def test_lists_per_modification_uses_the_same_heldout_lists_for_every_modification(tmp_path):
    summary = build_testbed(str(PROBLEMS), str(CANDIDATES), str(tmp_path),
                            _cfg("adversarial.lists_per_modification=5",
                                 "adversarial.positive=[authority]", "adversarial.negative=[reverse_authority]"))
    adv = load_lists(tmp_path / "adv.jsonl")
    by_mod = {m: sorted(a.extra["heldout_idx"] for a in adv if a.extra["modification"] == m)
              for m in ("authority", "reverse_authority")}
    assert len(adv) == 10 and len(by_mod["authority"]) == 5 and by_mod["authority"] == by_mod["reverse_authority"]
    assert summary["adversarial"]["heldout_lists_used"] == 5


def test_combined_mode_stays_available(tmp_path):
    build_testbed(str(PROBLEMS), str(CANDIDATES), str(tmp_path), _cfg("adversarial.mode=combined", "splits.adv_size=6"))
    adv = load_lists(tmp_path / "adv.jsonl")
    assert len(adv) == 6
    for a in adv:  # one positive and one negative transform per list, no single `modification`
        assert "modification" not in a.extra
        assert {ADV_TRANSFORMS[n].polarity for n in a.extra["adv_transforms"]} == {"positive", "negative"}


def test_a_modification_that_changes_nothing_is_counted_not_written():
    """identifier_renaming has nothing to rename in code without locals: that (modification, list)
    is skipped and counted; the statement modification still applies to the same list."""
    lst = VerifierList(idx="heldout-0", query="q", candidates=["print(1)\n", "print(2)\n"], pass_rates=[1.0, 0.0],
                       chosen_position=0, chosen_answer="A", prompt_id="p")
    report = BuildReport()
    adv = make_adversarial_per_modification([lst], ["identifier_renaming", "reverse_authority"], 0, report)
    assert [a.extra["modification"] for a in adv] == ["reverse_authority"]
    assert adv[0].candidates[1] == "print(2)\n" and adv[0].candidates[0] != "print(1)\n"
    counts = report.info["adversarial"]["per_modification"]
    assert counts["identifier_renaming"] == {"polarity": "negative", "modified_candidates": "chosen", "lists": 0,
                                             "not_applicable": 1}
    with pytest.raises(KeyError, match="unknown adversarial transform"):
        make_adversarial_per_modification([lst], ["flattery"], 0, BuildReport())


def test_paper_table2_config_builds_capped_splits_and_the_authors_six_modifications(tmp_path):
    """configs/testbed_paper_table2.yaml (sizes from the authors' release; Table 2 itself is a TODO
    there); the fixture's groups are below the 250 cap, so the cap is exercised with 20."""
    path = CONFIG.parent / "testbed_paper_table2.yaml"
    cfg = load_config(path, [], schema=TestbedConfig)
    assert (cfg.splits.train_size, cfg.splits.heldout_size, cfg.splits.strong_size, cfg.splits.hard_size,
            cfg.splits.max_per_group) == (50_000, 3_000, 3_000, 3_000, 250)
    assert cfg.adversarial.mode == "per_modification" and len(cfg.adversarial.positive + cfg.adversarial.negative) == 6
    cfg = load_config(path, ["adversarial.verify_sample=0", "adversarial.verify_per_transform=0",
                             "splits.max_per_group=20"], schema=TestbedConfig)
    summary = build_testbed(str(PROBLEMS), str(CANDIDATES), str(tmp_path), cfg)
    heldout, hard = load_lists(tmp_path / "heldout.jsonl"), load_lists(tmp_path / "hard.jsonl")
    for split in (heldout, hard):
        per_group = {n: sum(l.num_candidates == n for l in split) for n in (2, 3, 4, 5)}
        assert max(per_group.values()) <= 20, per_group
    assert len(heldout) == 80  # 4 lengths x 20 (the fixture has more than 20 of each)
    assert summary["splits"]["train"]["rows"] > 80  # the cap is for evaluation splits only
    adv = load_lists(tmp_path / "adv.jsonl")
    assert len(adv) == 6 * len(heldout)
    assert sorted({a.extra["modification"] for a in adv}) == sorted(cfg.adversarial.positive + cfg.adversarial.negative)
