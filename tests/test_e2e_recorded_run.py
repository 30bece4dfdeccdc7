"""Behaviour is preserved across refactors: ``configs/debug_cpu.yaml`` (the demo: 30 cold-start
steps, then GRPO with every actor) gives the recorded ``pg_loss``, ``reward/mean``, ``kl`` (and loss,
grad norm, advantages) at each of its first 3 steps. The record (``tests/data/debug_cpu_first3_steps.json``)
was made before the architecture-v2 refactor; the refactored tree reproduced it exactly on this machine.
Tolerances allow only float noise (another CPU's kernels), not a changed step."""
from __future__ import annotations

import json

import pytest

from aletheia_ray.tracking import read_metrics
from e2e_helpers import DEBUG_CONFIG, REPO, run_train_in_own_ray

pytestmark = pytest.mark.slow
RECORD = REPO / "tests" / "data" / "debug_cpu_first3_steps.json"


def test_debug_config_repeats_the_recorded_first_three_steps(tmp_path):
    record = json.loads(RECORD.read_text())["steps"]
    _, leftovers = run_train_in_own_ray(["trainer.total_steps=3", "trainer.save_steps=0", "trainer.save_final=false",
                                         "logging.wandb=disabled"], tmp_path, config=DEBUG_CONFIG)
    assert not leftovers
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2, 3]
    for want, got in zip(record, rows):
        assert got["reward/mean"] == want["reward/mean"], f"step {want['step']}: the sampled verdicts changed"
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-7), f"step {want['step']}: {key}"
