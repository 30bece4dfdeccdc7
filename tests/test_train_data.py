"""Training-list selection (data.num_candidates / data.max_prompt_tokens) and data path resolution."""
from __future__ import annotations

from pathlib import Path

import pytest

from aletheia_ray.config import ConfigError, load_config
from aletheia_ray.data.synthetic import make_synthetic_lists
from aletheia_ray.train_config import REPO_ROOT, TrainConfig
from aletheia_ray.tasks.base import NoTrainingItemsError as NoTrainingListsError
from aletheia_ray.tasks.base import select_items as select_training_lists

CONFIGS = REPO_ROOT / "configs"
FIXTURE = REPO_ROOT.parent / "shared" / "data" / "humaneval_lists_dev.jsonl"


def _lists_and_ids():
    lists = make_synthetic_lists(6, num_candidates=[2, 3], seed=1)
    ids = [[0] * (10 * (i + 1)) for i in range(len(lists))]  # prompt lengths 10, 20, ..., 60
    return lists, ids


def test_filters_count_what_they_drop():
    lists, ids = _lists_and_ids()
    n2 = sum(len(l.candidates) == 2 for l in lists)
    kept, kept_ids, report = select_training_lists(lists, ids, budget=100, num_candidates=[2])
    assert all(len(l.candidates) == 2 for l in kept) and len(kept) == len(kept_ids) == n2
    assert report == {"data/num_lists_read": 6, "data/num_lists": n2, "data/dropped_num_candidates": 6 - n2,
                      "data/dropped_prompt_tokens": 0}
    kept, kept_ids, report = select_training_lists(lists, ids, budget=100, max_prompt_tokens=30)
    assert [len(i) for i in kept_ids] == [10, 20, 30] and report["data/dropped_prompt_tokens"] == 3


def test_too_long_prompt_without_a_limit_is_an_error_naming_the_list():
    lists, ids = _lists_and_ids()
    with pytest.raises(ValueError, match=rf"idx={lists[5].idx}: prompt has 60 tokens.*data.max_prompt_tokens"):
        select_training_lists(lists, ids, budget=50)
    with pytest.raises(ValueError, match="data.max_prompt_tokens .80. exceeds"):
        select_training_lists(lists, ids, budget=50, max_prompt_tokens=80)
    with pytest.raises(NoTrainingListsError, match="no list left"):
        select_training_lists(lists, ids, budget=100, max_prompt_tokens=5)


@pytest.mark.skipif(not FIXTURE.exists(), reason="fixture data not present beside the repo")
def test_relative_data_path_resolves_against_cwd_then_repo_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # ../shared/... does not exist from here: the repo root is used
    cfg = load_config(CONFIGS / "debug_cpu.yaml", schema=TrainConfig)
    assert Path(cfg.data.train_path) == FIXTURE.resolve()
    (tmp_path / "mine.jsonl").write_text(FIXTURE.read_text())
    cfg = load_config(CONFIGS / "debug_cpu.yaml", ["data.train_path=mine.jsonl"], schema=TrainConfig)
    assert cfg.data.train_path == str(tmp_path / "mine.jsonl")


def test_missing_data_file_names_key_and_file():
    with pytest.raises(ConfigError, match=r"data\.train_path.*'nowhere/lists\.jsonl' not found"):
        load_config(CONFIGS / "debug_cpu.yaml", ["data.train_path=nowhere/lists.jsonl"], schema=TrainConfig)


def test_debug_configs_use_fixture_lists_and_synthetic_twin():
    cfg = load_config(CONFIGS / "debug_cpu.yaml", schema=TrainConfig)
    assert cfg.data.kind == "lists" and cfg.data.num_candidates == [2, 3] and cfg.data.max_prompt_tokens == 640
    assert cfg.data.max_prompt_tokens <= cfg.model.max_model_len - cfg.rollout.max_new_tokens
    syn = load_config(CONFIGS / "debug_cpu_synthetic.yaml", schema=TrainConfig)
    assert syn.data.kind == "synthetic" and syn.cold_start.steps == 40
