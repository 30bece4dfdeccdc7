"""Checkpoint layout and controller state (step, sampler position, RNG states).

    <output_dir>/checkpoints/step_000040/
        deepspeed/            learner group: model + optimizer + scheduler (DeepSpeed format)
        hf/                   HF export (config, safetensors, tokenizer): loadable by vLLM/transformers
        reference/            reference weights as HF dir, only once the reference was re-synced
        controller_state.pt   ControllerState (torch.save; RNG states are tensors/tuples)
        pending_rollout.json  async_tis only: the next step's batch, already generated
        COMPLETE              written last (after fsyncing every file, atomically): a directory
                              without it is ignored by ``latest_checkpoint`` and removed on resume

The controller (``actors/controller.py``) fills the directories; this module only names them
and (de)serialises the controller's own state, so it stays free of Ray.
"""
from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np
import torch

from aletheia_ray.batch import Generation

CHECKPOINTS = "checkpoints"
COMPLETE = "COMPLETE"
STATE_FILE = "controller_state.pt"
PENDING_FILE = "pending_rollout.json"
FAULT_PAUSE_ENV = "ALETHEIA_FAULT_PAUSE_IN_SAVE"  # tests only: see fault_pause_in_save
_STEP_DIR = re.compile(r"^step_(\d+)$")
log = logging.getLogger("aletheia_ray.checkpoint")


@dataclass
class ControllerState:
    step: int  # RL steps completed
    sampler: dict[str, Any]  # PromptSampler.state_dict()
    cold_start_done: bool = False
    ref_synced_step: Optional[int] = None  # step of the last reference re-sync (None: base weights)
    updates: int = 0  # RL optimizer updates made (batch_online makes several per step)
    rng: dict[str, Any] = field(default_factory=dict)  # capture_rng_state()

    def summary(self) -> dict[str, Any]:
        """The JSON-able part (handed to DeepSpeed as client_state and written next to it)."""
        out = asdict(self)
        out.pop("rng")
        return out


def step_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / CHECKPOINTS / f"step_{step:06d}"


def latest_checkpoint(output_dir: str | Path) -> Optional[Path]:
    """The complete checkpoint with the highest step, or None."""
    found = complete_checkpoints(output_dir)
    return found[-1][1] if found else None


def capture_rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_controller_state(directory: str | Path, state: ControllerState) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(asdict(state), directory / STATE_FILE)
    (directory / "controller_state.json").write_text(json.dumps(state.summary(), indent=2) + "\n")
    return directory / STATE_FILE


def load_controller_state(directory: str | Path) -> ControllerState:
    path = Path(directory) / STATE_FILE
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {directory} has no {STATE_FILE}; it is not a controller checkpoint")
    data = torch.load(path, weights_only=False)
    return ControllerState(**data)


def save_pending_rollout(directory: str | Path, pending: dict[str, Any]) -> None:
    """async_tis: the next step's batch, generated before the save from weights one update behind;
    a resume trains on it instead of regenerating from newer weights (so it repeats the run)."""
    data = {**pending, "generations": [asdict(g) for g in pending["generations"]]}
    (Path(directory) / PENDING_FILE).write_text(json.dumps(data) + "\n")


def load_pending_rollout(directory: str | Path) -> Optional[dict[str, Any]]:
    path = Path(directory) / PENDING_FILE
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    data["generations"] = [Generation(**g) for g in data["generations"]]
    return data


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mark_complete(directory: str | Path) -> None:
    """Make every file of the checkpoint durable, then write ``COMPLETE`` atomically: each file
    (all closed: the writers returned) and directory is fsynced, the marker goes to a temporary
    name, is fsynced, renamed (``os.replace``) and the directory fsynced again. A kill or power
    loss at any point leaves either no marker or a marker over complete, durable files."""
    directory = Path(directory)
    for root, dirs, files in os.walk(directory):
        for name in files:
            _fsync(Path(root) / name)
        _fsync(Path(root))
    tmp = directory / f".{COMPLETE}.tmp"
    with open(tmp, "w") as f:
        f.write("ok\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / COMPLETE)
    _fsync(directory)


def fault_pause_in_save(directory: str | Path, step: int) -> None:
    """FAULT INJECTION for tests only: with ``ALETHEIA_FAULT_PAUSE_IN_SAVE=<step>`` in the environment,
    the save of that step blocks here (after every file, before ``COMPLETE``) after creating
    ``FAULT_PAUSED_IN_SAVE`` in the step directory, so a test can kill the run mid-save."""
    if os.environ.get(FAULT_PAUSE_ENV) != str(step):
        return
    (Path(directory) / "FAULT_PAUSED_IN_SAVE").write_text(f"{os.getpid()}\n")
    log.warning("%s=%d: fault injection, the save of step %d blocks before COMPLETE until killed",
                FAULT_PAUSE_ENV, step, step)
    while True:
        time.sleep(3600)


def complete_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, directory) of every complete checkpoint, oldest first."""
    root = Path(output_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and (child / COMPLETE).exists():
            found.append((int(match.group(1)), child))
    return sorted(found)


def prune_checkpoints(output_dir: str | Path, keep_last: Optional[int],
                      keep_steps: Iterable[Optional[int]] = ()) -> list[Path]:
    """``trainer.keep_last``: delete the complete checkpoints older than the newest ``keep_last``,
    except those of ``keep_steps`` (the one just written, the evaluation's best; None entries are
    ignored). Incomplete directories are left alone (a save may be under way; resume removes them).
    Each victim loses its ``COMPLETE`` marker first, so a kill during the deletion leaves an
    incomplete directory that resume ignores and removes, never a 'complete' one with files
    missing. Returns the deleted directories, oldest first."""
    if keep_last is None:
        return []
    if keep_last < 1:
        raise ValueError(f"trainer.keep_last must be >= 1 or None, got {keep_last}")
    found = complete_checkpoints(output_dir)
    protected = {step for step, _ in found[-keep_last:]} | {s for s in keep_steps if s is not None}
    removed = []
    for step, path in found:
        if step not in protected:
            (path / COMPLETE).unlink()
            shutil.rmtree(path)
            removed.append(path)
    if removed:
        log.warning("trainer.keep_last=%d: removed checkpoints %s", keep_last, [p.name for p in removed])
    return removed


def remove_incomplete(output_dir: str | Path) -> list[Path]:
    """Delete step directories without COMPLETE (a save interrupted by a kill); return them."""
    root = Path(output_dir) / CHECKPOINTS
    removed = []
    if root.is_dir():
        for child in root.iterdir():
            if _STEP_DIR.match(child.name) and not (child / COMPLETE).exists():
                shutil.rmtree(child, ignore_errors=True)
                removed.append(child)
    return removed
