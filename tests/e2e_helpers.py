"""Helpers for the end-to-end training tests: run aletheia-train, find and stop a run's Ray processes.

Only processes this test started are stopped, by pid: a run's Ray processes are the ones whose
command line names its private Ray temp dir, plus their descendants (workers rename themselves).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
DEBUG_CONFIG = REPO / "configs" / "debug_cpu.yaml"  # fixture lists (make demo)
SYNTHETIC_CONFIG = REPO / "configs" / "debug_cpu_synthetic.yaml"  # synthetic lists: fast, learnable


def train_command() -> list[str]:
    exe = shutil.which("aletheia-train")
    return [exe] if exe else [sys.executable, "-m", "aletheia_ray.launch.train"]


def run_train(overrides: list[str], *, timeout: float, config: Path = DEBUG_CONFIG, env=None) -> subprocess.CompletedProcess:
    proc = subprocess.run([*train_command(), "--config", str(config), *overrides], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise AssertionError(f"aletheia-train failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    return proc


def ray_temp_dir() -> str:
    return tempfile.mkdtemp(prefix="h8ray", dir="/tmp")  # short: Ray's socket paths must fit 107 chars


def run_train_in_own_ray(overrides: list[str], out: Path, *, config: Path, timeout: float = 900):
    """Run aletheia-train with a private Ray temp dir; stop whatever it left running. Returns
    (completed process, the Ray processes that were still alive after it exited)."""
    temp = ray_temp_dir()
    try:
        proc = run_train([*overrides, f"output_dir={out}", f"ray.temp_dir={temp}"], timeout=timeout,
                         config=config)
        leftovers = processes_of(temp)
    finally:
        kill_processes(processes_of(temp))
    return proc, leftovers


def processes_of(marker: str) -> list[psutil.Process]:
    """Processes whose command line contains ``marker`` and all their descendants."""
    found: dict[int, psutil.Process] = {}
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if p.pid != os.getpid() and marker in " ".join(p.info["cmdline"] or []):
                found[p.pid] = p
                for child in p.children(recursive=True):
                    found[child.pid] = child
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return list(found.values())


def kill_processes(procs: list[psutil.Process], grace_s: float = 5.0) -> None:
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace_s)


def kill_run_when(proc: subprocess.Popen, path: Path, marker: str, timeout: float) -> None:
    """SIGKILL a training process group as soon as ``path`` exists (a pre-emption), then its Ray."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"run ended (rc={proc.returncode}) before {path} appeared")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout}s")
        time.sleep(0.2)
    ray_procs = processes_of(marker)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    kill_processes(ray_procs + processes_of(marker))


RECORDED_STEPS = REPO / "tests" / "data" / "debug_cpu_first3_steps.json"


def assert_recorded_steps(rows: list[dict]) -> None:
    """``configs/debug_cpu.yaml``'s first 3 steps equal the record made before the architecture-v2
    refactor (the refactored tree reproduced it exactly on this machine). ``reward/mean`` must match
    exactly (the same verdicts were sampled); losses within float noise of another CPU's kernels."""
    import pytest

    record = json.loads(RECORDED_STEPS.read_text())["steps"]
    assert len(rows) >= len(record)
    for want, got in zip(record, rows):
        assert got["step"] == want["step"]
        assert got["reward/mean"] == want["reward/mean"], f"step {want['step']}: the sampled verdicts changed"
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-7), f"step {want['step']}: {key}"


def verdict_accuracy(rows: list[dict]) -> float:
    """Accuracy of the verdicts given over these metrics rows: ``reward/list_acc`` over the parse rate
    (unparseable samples are the cold start's business, not the policy's judgement)."""
    parsed = sum(r["reward/parse_rate"] for r in rows)
    return sum(r["reward/list_acc"] for r in rows) / parsed if parsed else float("nan")


def run_eval(args: list[str], out: Path, *, timeout: float = 600) -> dict:
    """``aletheia-eval run ... --out out`` in a local Ray of its own (RAY_ADDRESS dropped); its metrics.json."""
    exe = shutil.which("aletheia-eval")
    cmd = [exe] if exe else [sys.executable, "-m", "aletheia_ray.launch.eval"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([*cmd, "run", *args, "--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"aletheia-eval run failed ({done.returncode}):\n{done.stderr[-6000:]}")
    return json.loads((out / "metrics.json").read_text())
