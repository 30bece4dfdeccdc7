"""Training config schema: shipped configs load, paper values, errors name key and file."""
from __future__ import annotations

from pathlib import Path

import pytest

from aletheia_ray.config import ConfigError, load_config
from aletheia_ray.train_config import TrainConfig

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_grpo_think_has_the_papers_hyper_parameters():
    cfg = load_config(CONFIGS / "grpo_think.yaml", schema=TrainConfig)
    a, r, l = cfg.algorithm, cfg.rollout, cfg.learner
    assert (a.samples_per_prompt, a.prompts_per_step) == (16, 64)
    assert (a.eps_low, a.eps_high, a.beta) == (0.2, 0.28, 1e-3)
    assert (l.lr, l.warmup_ratio, l.weight_decay) == (1e-6, 0.05, 0.0)
    assert (r.temperature, r.max_new_tokens) == (1.0, 16384)
    assert cfg.reference.sync_steps == 100 and cfg.use_reference
    assert cfg.reward.fn == "list_em" and cfg.reward.overlong.enabled
    assert cfg.data.prompt_style == "think" and cfg.algorithm.sync_mode == "on_policy"
    assert cfg.warmup_steps == 25  # 5% of 500 steps


def test_debug_cpu_fits_two_cores():
    cfg = load_config(CONFIGS / "debug_cpu.yaml", schema=TrainConfig)
    cpus = (cfg.learner.num_ranks * cfg.learner.num_cpus_per_rank
            + cfg.rollout.num_engines * cfg.rollout.num_cpus_per_engine
            + cfg.reference.num_cpus + cfg.reward.num_actors * cfg.reward.num_cpus_per_actor)
    assert cpus <= 2.0
    assert cfg.learner.num_ranks == 2 and cfg.learner.backend == "gloo" and cfg.rollout.num_engines == 1
    assert cfg.use_reference and cfg.model.path == "embedded:tiny"


def test_sft_cold_start_recipe_loads():
    cfg = load_config(CONFIGS / "sft_cold_start.yaml", schema=TrainConfig)
    assert cfg.cold_start.enabled and cfg.cold_start.targets == "correct"


def test_output_dir_and_dotted_overrides():
    cfg = load_config(CONFIGS / "debug_cpu.yaml", ["output_dir=/tmp/x", "learner.lr=1e-4", "algorithm.beta=0"],
                      schema=TrainConfig)
    assert cfg.output_dir == "/tmp/x" and cfg.learner.lr == 1e-4
    assert not cfg.use_reference  # beta = 0 turns the reference actor off


def test_unknown_key_names_key_and_file():
    with pytest.raises(ConfigError, match=r"learner\.lrr.*debug_cpu\.yaml|learner\.lrr.*override"):
        load_config(CONFIGS / "debug_cpu.yaml", ["learner.lrr=1"], schema=TrainConfig)


def test_unknown_key_in_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"base: {CONFIGS / 'debug_cpu.yaml'}\nrollout:\n  temprature: 0.5\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad, schema=TrainConfig)
    assert "rollout.temprature" in str(err.value) and str(bad) in str(err.value)
    assert "temperature" in str(err.value)  # did-you-mean


@pytest.mark.parametrize("override, match", [
    ("reward.fn=list_emm", "unknown reward fn"),
    ("reward.overlong.cache=999", "overlong.cache"),
    ("rollout.max_new_tokens=4096", "max_model_len"),
    ("data.train_path=null", "train_path"),  # debug_cpu.yaml: kind lists
    ("learner.lr=-1", "learner.lr"),
])
def test_bad_values_are_named(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(CONFIGS / "debug_cpu.yaml", [override], schema=TrainConfig)


def test_output_dir_is_required(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("data:\n  kind: synthetic\n")
    with pytest.raises(ConfigError, match="output_dir"):
        load_config(f, schema=TrainConfig)


@pytest.mark.parametrize("fn", ["pair_em", "pair_sc"])
def test_reward_fns_the_trainer_cannot_prompt_for_are_rejected(tmp_path, fn):
    """data.kind lists builds listwise prompts: the pairwise rewards need data.kind pairs (and
    list_sc is trainable on lists with its score prompt: tests/test_tasks.py)."""
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "debug_cpu.yaml", [f"reward.fn={fn}"], schema=TrainConfig)
    assert f"key 'reward.fn' (from override 'reward.fn={fn}')" in str(err.value)
    assert f"reward fn {fn!r} cannot be trained" in str(err.value) and "list_em" in str(err.value)
    assert "(data.kind pairs trains it)" in str(err.value)
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"base: {CONFIGS / 'debug_cpu.yaml'}\nreward:\n  fn: {fn}\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad, schema=TrainConfig)
    assert f"key 'reward.fn' (in file {bad})" in str(err.value) and f"got {fn!r}" in str(err.value)
