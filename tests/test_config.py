"""Config loading: YAML + dotted overrides validated by StrictModel schemas; errors name key and file."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest

from aletheia_ray.config import ConfigError, StrictModel, dump_config, load_config


class OptimSection(StrictModel):
    lr: float = 1e-6
    betas: list[float] = [0.9, 0.999]


class TrainerSection(StrictModel):
    lr: float = 1e-6
    steps: int = 10
    optim: OptimSection = OptimSection()
    eps_clip: Optional[float] = None


class RunConfig(StrictModel):
    output_dir: str
    seed: int = 0
    trainer: TrainerSection = TrainerSection()
    tags: list[str] = []


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_file_and_overrides_give_typed_values(tmp_path):
    path = write(tmp_path, "run.yaml", "output_dir: /tmp/a\ntrainer:\n  lr: 1e-5\n  steps: 3\n")
    cfg = load_config(path, ["trainer.lr=2e-6", "output_dir=/x", "tags=[a,b]", "trainer.optim.betas=[0.5,0.6]"],
                      schema=RunConfig)
    assert cfg.trainer.lr == pytest.approx(2e-6)
    assert cfg.trainer.steps == 3
    assert cfg.output_dir == "/x"
    assert cfg.tags == ["a", "b"]
    assert cfg.trainer.optim.betas == [0.5, 0.6]
    assert cfg.trainer.eps_clip is None
    assert load_config(path, ["trainer.eps_clip=0.2"], schema=RunConfig).trainer.eps_clip == pytest.approx(0.2)


def test_no_file_uses_schema_defaults_and_overrides():
    cfg = load_config(None, ["output_dir=/o", "seed=7"], schema=RunConfig)
    assert (cfg.output_dir, cfg.seed, cfg.trainer.steps) == ("/o", 7, 10)


def test_unknown_key_in_file_names_full_key_file_and_suggestion(tmp_path):
    path = write(tmp_path, "run.yaml", "output_dir: /a\ntrainer:\n  optim:\n    lrr: 1.0\n")
    with pytest.raises(ConfigError) as e:
        load_config(path, [], schema=RunConfig)
    msg = str(e.value)
    assert "unknown key 'trainer.optim.lrr'" in msg
    assert f"in file {path}" in msg
    assert "did you mean 'lr'" in msg


def test_unknown_key_from_override_says_override(tmp_path):
    path = write(tmp_path, "run.yaml", "output_dir: /a\n")
    with pytest.raises(ConfigError) as e:
        load_config(path, ["trainer.stpes=4"], schema=RunConfig)
    msg = str(e.value)
    assert "unknown key 'trainer.stpes'" in msg and "from override 'trainer.stpes=4'" in msg
    assert "did you mean 'steps'" in msg


def test_wrong_type_names_key_source_and_value(tmp_path):
    path = write(tmp_path, "run.yaml", "output_dir: /a\ntrainer:\n  steps: many\n")
    with pytest.raises(ConfigError) as e:
        load_config(path, [], schema=RunConfig)
    msg = str(e.value)
    assert "bad value for key 'trainer.steps'" in msg and f"in file {path}" in msg and "'many'" in msg
    with pytest.raises(ConfigError) as e:
        load_config(path, ["trainer.steps=5", "trainer.lr=fast"], schema=RunConfig)
    msg = str(e.value)
    assert "bad value for key 'trainer.lr'" in msg and "from override 'trainer.lr=fast'" in msg
    assert "trainer.steps" not in msg  # the override fixed it


def test_wrong_type_in_list_element_names_index(tmp_path):
    path = write(tmp_path, "run.yaml", "output_dir: /a\ntrainer:\n  optim:\n    betas: [0.9, high]\n")
    with pytest.raises(ConfigError, match=r"trainer\.optim\.betas\[1\]"):
        load_config(path, [], schema=RunConfig)


def test_missing_required_key(tmp_path):
    path = write(tmp_path, "run.yaml", "seed: 1\n")
    with pytest.raises(ConfigError, match="missing required key 'output_dir'"):
        load_config(path, [], schema=RunConfig)


def test_missing_file_and_missing_base(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml", [], schema=RunConfig)
    child = write(tmp_path, "child.yaml", "base: gone.yaml\noutput_dir: /a\n")
    with pytest.raises(ConfigError, match=r"gone\.yaml \(named by 'base:' in .*child\.yaml\)"):
        load_config(child, [], schema=RunConfig)


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "bad.yaml", "output_dir: /a\ntrainer:\n  lr: [1, 2\n  steps: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(path, [], schema=RunConfig)
    assert "malformed YAML" in str(e.value) and str(path) in str(e.value) and "line" in str(e.value)
    top_list = write(tmp_path, "list.yaml", "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(top_list, [], schema=RunConfig)


@pytest.mark.parametrize("bad", ["trainer.lr", "=3", "trainer..lr=1", "trainer lr=1", "base=x.yaml"])
def test_malformed_override(bad):
    with pytest.raises(ConfigError) as e:
        load_config(None, ["output_dir=/a", bad], schema=RunConfig)
    assert f"override '{bad}'" in str(e.value)


def test_override_string_instead_of_list_is_rejected():
    with pytest.raises(ConfigError, match="list of 'key=value'"):
        load_config(None, "output_dir=/a", schema=RunConfig)


def test_base_chain_merges_parent_first_and_tracks_origin(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path, "root.yaml", "output_dir: /root\ntrainer:\n  lr: 1e-3\n  steps: 100\n")
    write(tmp_path, "sub/mid.yaml", "base: ../root.yaml\ntrainer:\n  steps: 50\n")
    leaf = write(tmp_path, "sub/leaf.yaml", "base: mid.yaml\nseed: 3\n")
    cfg = load_config(leaf, ["trainer.steps=7"], schema=RunConfig)
    assert (cfg.output_dir, cfg.trainer.lr, cfg.trainer.steps, cfg.seed) == ("/root", 1e-3, 7, 3)
    bad_leaf = write(tmp_path, "sub/bad.yaml", "base: mid.yaml\n")
    write(tmp_path, "root.yaml", "output_dir: /root\ntrainer:\n  warmup: 5\n")
    with pytest.raises(ConfigError, match=r"unknown key 'trainer.warmup' \(in file .*root\.yaml\)"):
        load_config(bad_leaf, [], schema=RunConfig)


def test_base_cycle_is_an_error(tmp_path):
    write(tmp_path, "a.yaml", "base: b.yaml\n")
    b = write(tmp_path, "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(b, [], schema=RunConfig)


def test_interpolation_resolves_and_bad_reference_is_named(tmp_path):
    path = write(tmp_path, "run.yaml", "output_dir: /runs/x\ntags: ['${output_dir}/logs']\n")
    assert load_config(path, [], schema=RunConfig).tags == ["/runs/x/logs"]
    bad = write(tmp_path, "bad.yaml", "output_dir: ${nowhere}\n")
    with pytest.raises(ConfigError, match="cannot resolve key 'output_dir'"):
        load_config(bad, [], schema=RunConfig)


def test_dump_then_load_round_trips(tmp_path):
    cfg = load_config(None, ["output_dir=/o", "trainer.eps_clip=0.28", "tags=[x]"], schema=RunConfig)
    out = dump_config(cfg, tmp_path / "nested" / "resolved.yaml")
    assert "eps_clip: 0.28" in out.read_text()
    assert load_config(out, [], schema=RunConfig) == cfg


def test_assignment_is_validated():
    cfg = load_config(None, ["output_dir=/o"], schema=RunConfig)
    with pytest.raises(Exception):
        cfg.trainer.steps = "lots"
