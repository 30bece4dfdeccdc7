"""configs/gpu_smoke.yaml and scripts/gpu_smoke.sh (docs/gpu.md): every run the script makes is a
valid config whose GPU asks fit on the ONE GPU it promises, and the script parses. The GPU runs
themselves cannot run here; their checks (aletheia_ray.run_checks) run on the CPU e2e runs."""
from __future__ import annotations

import re
import shlex
import subprocess

import pytest

from aletheia_ray.config import config_to_dict, load_config
from aletheia_ray.cost import devices_of
from aletheia_ray.train_config import TrainConfig
from fixture_paths import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "gpu_smoke.sh"
CONFIG = REPO_ROOT / "configs" / "gpu_smoke.yaml"


def _mode_overrides() -> dict[str, list[str]]:
    """The script's MODE_ARGS table (GPU path: COLOCATE as set before the --cpu branch)."""
    text = SCRIPT.read_text()
    colocate = re.search(r'^COLOCATE="([^"]*)"', text, re.M).group(1)
    modes = dict(re.findall(r'^\s*\[(\w+)\]="([^"]*)"', text, re.M))
    return {m: shlex.split(args.replace("$COLOCATE", colocate)) for m, args in modes.items()}


def test_the_script_parses_and_runs_every_sync_mode_and_the_colocated_layout():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    modes = _mode_overrides()
    assert sorted(modes) == ["async_tis", "batch_online", "colocated", "on_policy"]
    assert re.search(r"^for mode in on_policy batch_online async_tis colocated; do", SCRIPT.read_text(), re.M)


@pytest.mark.parametrize("mode", ["on_policy", "batch_online", "async_tis", "colocated"])
def test_each_smoke_run_is_valid_and_fits_on_one_gpu(mode):
    cfg = load_config(CONFIG, [*_mode_overrides()[mode], "trainer.total_steps=3"], schema=TrainConfig)
    assert cfg.trainer.total_steps == 3 and cfg.algorithm.sync_mode == ("on_policy" if mode == "colocated" else mode)
    assert devices_of(config_to_dict(cfg)) == ("GPU", 1.0)
    if cfg.colocate.enabled:
        plan = cfg.colocated_plan()
        assert len(plan.bundles) == 1 and plan.bundles[0]["GPU"] == 1.0  # learner, engine and reference share it
        assert sum(s.num_gpus for s in plan.slots()) <= 1.0
    else:
        r, l, ref = cfg.rollout, cfg.learner, cfg.reference
        asks = r.num_engines * r.num_gpus_per_engine + l.num_ranks * l.num_gpus_per_rank + ref.num_gpus
        assert asks == pytest.approx(1.0)
        # NCCL refuses two ranks on one device: one GPU means weights through the object store
        assert cfg.sync.transport == "object_store" and r.gpu_memory_utilization <= 0.5
