"""Controller state: checkpoint layout and RNG round-trip, metrics.jsonl on resume, sync policy."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from aletheia_ray import checkpoint as ckpt
from aletheia_ray.tracking import Tracker, format_step_line, read_metrics, wandb_mode


def test_controller_state_round_trip_restores_rngs(tmp_path):
    random.seed(1); np.random.seed(1); torch.manual_seed(1)
    state = ckpt.ControllerState(step=4, sampler={"epoch": 1, "position": 2}, cold_start_done=True,
                                 ref_synced_step=0, updates=16, rng=ckpt.capture_rng_state())
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    d = ckpt.step_dir(tmp_path, 4)
    ckpt.save_controller_state(d, state)
    random.seed(99); np.random.seed(99); torch.manual_seed(99)
    loaded = ckpt.load_controller_state(d)
    ckpt.restore_rng_state(loaded.rng)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
    assert loaded.summary() == {"step": 4, "sampler": {"epoch": 1, "position": 2}, "cold_start_done": True,
                                "ref_synced_step": 0, "updates": 16}
    assert json.loads((d / "controller_state.json").read_text())["step"] == 4


def test_latest_checkpoint_ignores_incomplete_saves(tmp_path):
    assert ckpt.latest_checkpoint(tmp_path) is None
    for step in (2, 4):
        ckpt.save_controller_state(ckpt.step_dir(tmp_path, step), ckpt.ControllerState(step, {}))
        ckpt.mark_complete(ckpt.step_dir(tmp_path, step))
    ckpt.save_controller_state(ckpt.step_dir(tmp_path, 6), ckpt.ControllerState(6, {}))  # killed mid-save
    assert ckpt.latest_checkpoint(tmp_path) == ckpt.step_dir(tmp_path, 4)
    assert ckpt.remove_incomplete(tmp_path) == [ckpt.step_dir(tmp_path, 6)]
    assert not ckpt.step_dir(tmp_path, 6).exists()


def test_missing_state_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="controller_state.pt"):
        ckpt.load_controller_state(tmp_path)


def test_tracker_writes_one_row_per_step_and_truncates_on_resume(tmp_path, capsys):
    t = Tracker(str(tmp_path), total_steps=4, wandb="disabled")
    for step in (1, 2, 3):
        t.log(step, {"reward/mean": 0.1 * step, "timing_s/step": 1.0, "actor/kl": torch.tensor(0.5)})
    summary = t.close()
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[2]["reward/mean"] == pytest.approx(0.3)
    assert rows[0]["actor/kl"] == 0.5  # tensors become plain numbers
    assert summary["last3/reward/mean"] == pytest.approx(0.2)
    assert "step 3/4 reward=+0.300" in capsys.readouterr().err
    # a resume from the step-2 checkpoint drops step 3 (logged after the checkpoint by the killed run)
    t2 = Tracker(str(tmp_path), total_steps=4, start_step=2, wandb="disabled", progress=False)
    t2.log(3, {"reward/mean": 0.9})
    t2.close()
    assert [(r["step"], r["reward/mean"]) for r in read_metrics(tmp_path)] == [(1, 0.1), (2, 0.2), (3, 0.9)]


def test_wandb_is_offline_without_a_key(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode("auto") == "online" and wandb_mode("disabled") == "disabled"


def test_wandb_offline_run_is_written(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    t = Tracker(str(tmp_path), total_steps=1, wandb="auto", progress=False)
    t.log(1, {"reward/mean": 1.0})
    t.close()
    assert list((tmp_path / "wandb").glob("offline-run-*")), "no offline wandb run directory"


def test_console_line_shows_the_key_metrics():
    line = format_step_line(3, 10, {"reward/mean": 0.5, "reward/list_acc": 0.75, "reward/parse_rate": 1.0,
                                    "actor/kl": 1e-4, "actor/pg_clipfrac": 0.0, "response_length/mean": 6.0,
                                    "frac_reward_zero_std": 0.25, "perf/throughput": 900.0})
    for part in ("step 3/10", "reward=+0.500", "acc=0.750", "parse=1.00", "kl=1.00e-04", "clip=0.000",
                 "len=6.0", "zero_std=0.25", "tok/s=900"):
        assert part in line
