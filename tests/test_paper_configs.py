"""configs/paper/: one config per paper row, each validated (with its algorithm's settings) and
dry-run without starting anything; the docs table lists every one."""
from __future__ import annotations

import pytest

from aletheia_ray.config import ConfigError, load_config
from aletheia_ray.launch.train import main
from aletheia_ray.train_config import TrainConfig
from fixture_paths import REPO_ROOT

PAPER = REPO_ROOT / "configs" / "paper"
ROWS = sorted(p.name for p in PAPER.glob("*.yaml"))
MODEL = "model.path=/models/policy"


def load(name: str, *overrides: str) -> TrainConfig:
    return load_config(PAPER / name, [MODEL, *overrides], schema=TrainConfig)


def test_the_rows_that_train_today_are_all_there():
    assert ROWS == ["bo_grpo.yaml", "dpo_sft_baseline.yaml", "dpo_think.yaml", "grpo_instruct.yaml",
                    "grpo_think_16k.yaml", "grpo_think_16k_8gpu_colocated.yaml", "grpo_think_4k.yaml", "grpo_think_8k.yaml", "list_sc.yaml", "pair_em.yaml",
                    "pair_sc.yaml", "raft.yaml"]


@pytest.mark.parametrize("name", ROWS)
def test_every_row_needs_a_model_and_dry_runs_without_starting_anything(name, capsys):
    with pytest.raises(ConfigError, match=r"missing required key 'model.path' \(in file .*grpo_think_16k.yaml"):
        load_config(PAPER / name, schema=TrainConfig)
    assert main(["--config", str(PAPER / name), "--dry-run", MODEL]) == 0
    out = capsys.readouterr().out
    assert "path: /models/policy" in out and "actor layout" in out and "learner rank (DeepSpeed)" in out


def test_grpo_think_rows_follow_the_paper():
    think = load("grpo_think_16k.yaml")
    a, l = think.algorithm, think.learner
    assert (think.trainer.total_steps, a.prompts_per_step, a.samples_per_prompt) == (781, 64, 16)
    assert a.settings == {"eps_low": 0.2, "eps_high": 0.28, "beta": 1e-3} and a.tis_cap == 2.0
    assert (l.lr, think.reference.sync_steps, think.rollout.max_new_tokens) == (1e-6, 100, 16384)
    assert think.data.prompt_style == "think" and think.use_reference
    for name, budget in (("grpo_think_8k.yaml", 8192), ("grpo_think_4k.yaml", 4096)):
        cfg = load(name)
        assert cfg.rollout.max_new_tokens == budget and cfg.model.max_model_len == budget + 4096
        assert cfg.reward.overlong.cache == budget // 4 and cfg.trainer.total_steps == 781
    instruct = load("grpo_instruct.yaml")
    assert instruct.data.prompt_style == "instruct" and instruct.algorithm.settings == a.settings


def test_bo_grpo_makes_as_many_updates_as_grpo_with_gspo():
    bo, think = load("bo_grpo.yaml"), load("grpo_think_16k.yaml")
    a = bo.algorithm
    assert (a.loss, a.sync_mode, a.prompts_per_step, a.updates_per_generation) == ("gspo", "batch_online", 256, 4)
    assert a.settings == {"eps_low": 3e-4, "eps_high": 4e-4, "beta": 1e-3} and a.tis_cap is None
    assert abs(bo.total_updates - think.total_updates) < 4  # 780 vs 781: 781 is not a multiple of 4


def test_raft_and_pair_em_rows():
    raft = load("raft.yaml")
    assert raft.algorithm.loss == "raft" and raft.algorithm.settings == {"max_positives_per_group": 5}
    assert raft.learner.lr == 2e-6 and not raft.use_reference
    assert [r["role"] for r in raft.actor_layout()] == ["rollout engine (vLLM)", "learner rank (DeepSpeed)",
                                                        "reward actor"]
    for name, kind, fn in (("pair_em.yaml", "pairs", "pair_em"), ("pair_sc.yaml", "pairs", "pair_sc"),
                           ("list_sc.yaml", "lists", "list_sc")):
        cfg = load(name)
        assert cfg.data.kind == kind and cfg.data.task.scorer(cfg).fn == fn and cfg.algorithm.loss == "grpo"


def test_dpo_think_and_its_sft_baseline_rows():
    dpo = load("dpo_think.yaml")
    a, p = dpo.algorithm, dpo.preference
    assert (a.loss, a.settings, a.tis_cap, dpo.learner.lr) == ("dpo", {"beta": 0.1}, None, 5e-7)
    assert (p.samples_per_list, p.temperature, p.pairs_per_list) == (100, 1.0, 4) and dpo.use_reference
    assert dpo.data.kind == "lists" and dpo.data.task.scorer(dpo).fn == "list_em"
    assert dpo.total_updates == load("grpo_think_16k.yaml").total_updates == 781
    sft = load("dpo_sft_baseline.yaml")
    assert (sft.algorithm.loss, sft.algorithm.settings, sft.learner.lr) == ("sft_chosen", {}, 2e-6)
    assert sft.preference == dpo.preference and not sft.use_reference


def test_docs_table_lists_every_row():
    text = (REPO_ROOT / "docs" / "training.md").read_text()
    assert all(f"configs/paper/{name}" in text for name in ROWS)
