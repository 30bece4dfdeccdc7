"""Checkpoint layout and controller state (step, sampler position, RNG states).

    <output_dir>/checkpoints/step_000040/
        deepspeed/            learner group: model + optimizer + scheduler (DeepSpeed format)
        hf/                   HF export (config, safetensors, tokenizer): loadable by vLLM/transformers
        reference/            reference weights as HF dir, only once the reference was re-synced
        controller_state.pt   ControllerState (torch.save; RNG states are tensors/tuples)
        pending_rollout.json  async_tis only: the next step's batch, already generated
        COMPLETE              written last: a directory without it is ignored by ``latest_checkpoint``

The controller (``actors/controller.py``) fills the directories; this module only names them
and (de)serialises the controller's own state, so it stays free of Ray.
"""
from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from aletheia_ray.batch import Generation

CHECKPOINTS = "checkpoints"
COMPLETE = "COMPLETE"
STATE_FILE = "controller_state.pt"
PENDING_FILE = "pending_rollout.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")


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
    root = Path(output_dir) / CHECKPOINTS
    if not root.is_dir():
        return None
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and (child / COMPLETE).exists():
            found.append((int(match.group(1)), child))
    return max(found)[1] if found else None


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


def mark_complete(directory: str | Path) -> None:
    (Path(directory) / COMPLETE).write_text("ok\n")


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
