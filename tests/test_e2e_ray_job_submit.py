"""``ray job submit`` of the debug config to a local head node (own temp dir, loopback, token auth
as Ray 2.60 enables it by default); the head node's processes are stopped by pid afterwards.

The job runs the demo config unchanged for 3 steps and must repeat the steps recorded before the
architecture-v2 refactor (``tests/data/debug_cpu_first3_steps.json``): behaviour is preserved, and a
job on a cluster trains exactly as a local run does."""
from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import tempfile

import pytest

from aletheia_ray.tracking import read_metrics
from e2e_helpers import DEBUG_CONFIG, REPO, assert_recorded_steps, kill_processes, processes_of

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_job_submit_runs_the_debug_config(tmp_path):
    temp = tempfile.mkdtemp(prefix="h8job", dir="/tmp")
    gcs_port, dashboard_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # Ray 2.60: token auth is on for local clusters; the CLI client must send the same token.
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))
    start = ["ray", "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs_port}", "--num-cpus=2",
             f"--temp-dir={temp}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
             f"--dashboard-port={dashboard_port}", "--disable-usage-stats"]
    try:
        subprocess.run(start, env=env, check=True, capture_output=True, text=True, timeout=180)
        runtime_env = {"env_vars": {"TOKENIZERS_PARALLELISM": "false"}}
        submit = ["ray", "job", "submit", f"--address=http://127.0.0.1:{dashboard_port}",
                  f"--runtime-env-json={json.dumps(runtime_env)}", "--",
                  "aletheia-train", "--config", str(DEBUG_CONFIG), f"output_dir={tmp_path}",
                  "trainer.total_steps=3", "trainer.save_steps=0", "trainer.save_final=false", "logging.wandb=disabled"]
        proc = subprocess.run(submit, env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        assert "succeeded" in proc.stdout
        assert "run summary" in proc.stdout + proc.stderr  # the job's logs are streamed back
    finally:
        kill_processes(processes_of(temp))
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2, 3] and all("timing_s/gen" in r for r in rows)
    assert_recorded_steps(rows)  # the job repeats the demo's recorded steps (behaviour preserved)
