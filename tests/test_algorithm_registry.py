"""The algorithm registry (no Ray): entries, settings checked at config load, a toy loss added by
registering it alone, RAFT's sample filter, and the CLI refusing a bad algorithm before Ray starts."""
from __future__ import annotations

import subprocess
import sys
import time
from typing import Annotated

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field

from aletheia_ray.algorithms import registry
from aletheia_ray.algorithms.registry import ALGORITHMS, keep_positives, register_algorithm
from aletheia_ray.batch import TrainBatch
from aletheia_ray.config import ConfigError, load_config
from aletheia_ray.train_config import TrainConfig
from fixture_paths import REPO_ROOT

DEBUG = REPO_ROOT / "configs" / "debug_cpu.yaml"
GRPO_SETTINGS = ("eps_low", "eps_high", "beta")


@pytest.fixture
def bare_config(tmp_path):
    """configs/debug_cpu.yaml without its GRPO settings, so any algorithm can be chosen on top."""
    tree = yaml.safe_load(DEBUG.read_text())
    for key in GRPO_SETTINGS:
        tree["algorithm"].pop(key)
    tree["data"]["train_path"] = str((REPO_ROOT / tree["data"]["train_path"]).resolve())
    path = tmp_path / "bare.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


@pytest.fixture
def toy_algorithm():
    """A loss added the way a user would: one decorated function (nothing else touched)."""

    @register_algorithm("toy_scaled_nll", advantage=None, needs_old_logprobs=False)
    def toy(logprobs, batch, *, global_num_tokens, global_num_sequences,
            scale: Annotated[float, Field(gt=0)] = 1.0):
        loss = -scale * (logprobs * batch.loss_mask).sum() / global_num_tokens
        return loss, {"toy": float(loss.detach())}

    yield ALGORITHMS["toy_scaled_nll"]
    del ALGORITHMS["toy_scaled_nll"]


def _batch():
    return TrainBatch(input_ids=torch.zeros(2, 3, dtype=torch.long), attention_mask=torch.ones(2, 3),
                      loss_mask=torch.tensor([[1.0, 1.0], [1.0, 0.0]]), advantages=torch.zeros(2))


def test_entries_say_what_each_algorithm_needs():
    assert sorted(ALGORITHMS) == ["dpo", "grpo", "gspo", "raft", "sft", "sft_chosen"]
    grpo, gspo, sft, raft = (ALGORITHMS[k] for k in ("grpo", "gspo", "sft", "raft"))
    dpo, sft_chosen = ALGORITHMS["dpo"], ALGORITHMS["sft_chosen"]
    assert grpo.defaults() == {"eps_low": 0.2, "eps_high": 0.28, "beta": 1e-3} and grpo.takes_tis
    assert gspo.defaults() == {"eps_low": 3e-4, "eps_high": 4e-4, "beta": 0.0} and not gspo.takes_tis
    assert (grpo.advantage, grpo.reference_setting, grpo.needs_old_logprobs) == ("grpo", "beta", True)
    assert grpo.uses_reference({"beta": 1e-3}) and not grpo.uses_reference({"beta": 0.0})
    assert sft.settings == {} and sft.advantage is None and not sft.needs_old_logprobs
    assert raft.loss is sft.loss and raft.sample_filter is keep_positives
    assert raft.defaults() == {"max_positives_per_group": 5} and not raft.uses_reference(raft.defaults())
    assert (dpo.offline_data, dpo.rows_per_unit, dpo.defaults()) == ("preference_pairs", 2, {"beta": 0.1})
    assert not dpo.needs_old_logprobs and dpo.advantage is None and not dpo.uses_reference(dpo.defaults())
    assert (sft_chosen.offline_data, sft_chosen.rows_per_unit, sft_chosen.loss) == ("chosen_samples", 1, sft.loss)
    assert all(ALGORITHMS[k].offline_data is None and ALGORITHMS[k].rows_per_unit == 1 for k in ("grpo", "gspo", "raft"))


def test_a_toy_loss_registered_alone_is_configurable_and_trains(bare_config, toy_algorithm):
    assert toy_algorithm.defaults() == {"scale": 1.0}
    cfg = load_config(bare_config, ["algorithm.loss=toy_scaled_nll", "algorithm.scale=2.5"], schema=TrainConfig)
    assert cfg.algorithm.settings == {"scale": 2.5} and not cfg.use_reference
    assert cfg.model_dump()["algorithm"]["scale"] == 2.5  # dumped with the run's config.yaml
    with pytest.raises(ConfigError, match=r"key 'algorithm.scale'.*greater than 0"):
        load_config(bare_config, ["algorithm.loss=toy_scaled_nll", "algorithm.scale=0"], schema=TrainConfig)
    logprobs = torch.tensor([[-1.0, -2.0], [-3.0, -9.0]], requires_grad=True)
    loss, metrics = registry.compute_loss("toy_scaled_nll", logprobs, _batch(), global_num_tokens=3.0,
                                          global_num_sequences=2.0, scale=2.5)
    assert loss.item() == pytest.approx(2.5 * 6.0 / 3.0) and metrics["toy"] == pytest.approx(5.0)
    loss.backward()
    assert logprobs.grad.tolist() == [[pytest.approx(-2.5 / 3)] * 2, [pytest.approx(-2.5 / 3), 0.0]]


def test_unknown_algorithm_and_foreign_settings_are_config_errors_naming_the_choices(bare_config):
    with pytest.raises(ConfigError) as err:
        load_config(DEBUG, ["algorithm.loss=grop"], schema=TrainConfig)
    assert "key 'algorithm.loss'" in str(err.value) and "known algorithms: ['dpo', 'grpo', 'gspo', 'raft', 'sft', 'sft_chosen']" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config(bare_config, ["algorithm.loss=sft", "algorithm.eps_high=0.3"], schema=TrainConfig)
    assert "key 'algorithm.eps_high' (from override 'algorithm.eps_high=0.3')" in str(err.value)
    assert "algorithm 'sft' (algorithm.loss) does not take setting 'eps_high'; its settings: none" in str(err.value)
    with pytest.raises(ConfigError, match=r"'algorithm.eps_hgh'.*its settings: \['beta', 'eps_high', 'eps_low'\]"):
        load_config(DEBUG, ["algorithm.eps_hgh=0.3"], schema=TrainConfig)
    with pytest.raises(ConfigError, match=r"key 'algorithm.beta'.*greater than or equal to 0"):
        load_config(DEBUG, ["algorithm.beta=-1"], schema=TrainConfig)
    with pytest.raises(ConfigError, match=r"TIS .* applied by the loss of \['grpo'\]"):
        load_config(bare_config, ["algorithm.loss=gspo", "algorithm.sync_mode=async_tis"], schema=TrainConfig)


def test_settings_get_the_entry_defaults_and_drive_the_reference(bare_config):
    cfg = load_config(bare_config, ["algorithm.loss=gspo"], schema=TrainConfig)
    assert cfg.algorithm.settings == {"eps_low": 3e-4, "eps_high": 4e-4, "beta": 0.0} and not cfg.use_reference
    cfg = load_config(bare_config, ["algorithm.loss=raft"], schema=TrainConfig)
    assert cfg.algorithm.settings == {"max_positives_per_group": 5} and not cfg.use_reference
    assert load_config(DEBUG, schema=TrainConfig).use_reference


def test_raft_keeps_at_most_n_positives_per_group_and_counts_empty_groups():
    rewards = [1.0, 0.0, 1.0, 1.0, -1.0, 0.0, 0.0, 1.0, 0.5]
    groups = [0, 0, 0, 0, 1, 1, 1, 2, 2]
    kept, metrics = keep_positives(rewards, groups, max_positives_per_group=2)
    assert kept == [0, 2, 7, 8]  # group 0: the first two positives; group 1: none; group 2: both
    assert metrics == {"filter/kept_samples": 4.0, "filter/kept_frac": 4 / 9, "filter/groups_without_samples": 1.0}
    assert keep_positives(rewards, groups)[0] == [0, 2, 3, 7, 8]


def test_cli_refuses_an_unknown_algorithm_before_any_actor_starts(tmp_path):
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "aletheia_ray.launch.train", "--config", str(DEBUG),
                           "algorithm.loss=grop", f"output_dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    elapsed = time.perf_counter() - start
    assert proc.returncode != 0 and elapsed < 15
    assert "unknown algorithm 'grop'; known algorithms: ['dpo', 'grpo', 'gspo', 'raft', 'sft', 'sft_chosen']" in proc.stderr
    assert "Ray" not in proc.stderr and not (tmp_path / "run").exists()  # nothing started, nothing written


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from([-1.0, -0.5, 0.0, 0.5, 1.0])), max_size=60),
       st.integers(1, 6))
def test_raft_filter_never_keeps_more_than_the_cap_and_only_positives(samples, cap):
    groups, rewards = [g for g, _ in samples], [r for _, r in samples]
    kept, metrics = keep_positives(rewards, groups, max_positives_per_group=cap)
    assert kept == sorted(set(kept)) and all(rewards[k] > 0 for k in kept)
    for group in set(groups):
        positives = [i for i, g in enumerate(groups) if g == group and rewards[i] > 0]
        assert [k for k in kept if groups[k] == group] == positives[:cap]  # the first ones, up to the cap
    assert metrics["filter/groups_without_samples"] == sum(
        1 for group in set(groups) if not any(rewards[i] > 0 for i, g in enumerate(groups) if g == group))
