"""aletheia_ray.run_checks (what scripts/gpu_smoke.sh asserts of each sync mode's run) on written
metrics files; the e2e tests run the same checks on real CPU runs of every sync mode."""
from __future__ import annotations

import json

import pytest

from aletheia_ray.run_checks import REQUIRED, check_run, main


def _row(step: int, **over) -> dict:
    row = {k: 0.5 for k in REQUIRED}
    row.update({"step": step, "rollout/staleness": 0.0, "train/updates": float(step),
                "rollout/logprob_abs_diff_mean": 1e-4})
    row.update(over)
    return row


def _write(tmp_path, rows) -> str:
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(tmp_path)


def test_a_sound_on_policy_run_has_no_problems(tmp_path):
    run = _write(tmp_path, [_row(s) for s in (1, 2, 3)])
    assert check_run(run, steps=3, sync_mode="on_policy") == []
    assert main([run, "--steps", "3", "--sync-mode", "on_policy"]) == 0


def test_each_problem_names_the_step_and_the_metric(tmp_path):
    rows = [_row(1), _row(2, **{"actor/pg_loss": float("nan")}),
            _row(3, **{"rollout/logprob_abs_diff_mean": 1.3, "actor/grad_norm": 0.0})]
    del rows[0]["timing_s/sync"]
    problems = check_run(_write(tmp_path, rows), steps=3, sync_mode="on_policy")
    assert problems == ["step 1: missing ['timing_s/sync']",
                        "step 2: non-finite ['actor/pg_loss']",
                        "step 3: actor/grad_norm = 0.0 (no gradient reached the model)",
                        "step 3: rollout/logprob_abs_diff_mean = 1.300 > 0.25: the engine does not sample from the "
                        "trainer's weights (weight sync, dtype or kernel mismatch)"]


def test_sync_modes_are_told_apart_by_staleness_updates_and_tis(tmp_path):
    async_rows = [_row(1, **{"actor/tis_weight_mean": 1.0}),
                  _row(2, **{"actor/tis_weight_mean": 0.9, "rollout/staleness": 1.0,
                             "rollout/logprob_abs_diff_mean": 2.0})]  # stale: a gap is expected
    run = _write(tmp_path, async_rows)
    assert check_run(run, steps=2, sync_mode="async_tis") == []
    assert check_run(run, steps=2, sync_mode="on_policy") == [
        "step 2: rollout/staleness = 1.0, expected 0.0 in on_policy"]
    assert check_run(run, steps=2, sync_mode="batch_online", updates_per_generation=2) == [
        "step 1: train/updates = 1.0, expected 2.0 in batch_online",
        "step 2: rollout/staleness = 1.0, expected 0.0 in batch_online",
        "step 2: train/updates = 2.0, expected 4.0 in batch_online"]
    assert check_run(run, steps=3, sync_mode="async_tis") == ["steps logged [1, 2], expected 1..3"]
    with pytest.raises(ValueError, match="unknown sync mode 'sync'"):
        check_run(run, steps=2, sync_mode="sync")


def test_a_directory_without_metrics_is_named(tmp_path):
    assert check_run(tmp_path, steps=1, sync_mode="on_policy") == [
        f"{tmp_path / 'metrics.jsonl'} does not exist: not a run directory, or the run never logged"]
    assert main([str(tmp_path), "--steps", "1", "--sync-mode", "on_policy"]) == 1
