"""`aletheia-sandbox probe` and `aletheia-sandbox run` end to end (real bwrap sandbox)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from fixture_paths import REPO_ROOT

sys.path.insert(0, os.path.dirname(__file__))  # the loopback SandboxFusion helper

pytestmark = pytest.mark.sandbox
SLOT_BASE = 85


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "aletheia_ray.launch.sandbox", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=str(REPO_ROOT))


def test_probe_prints_level_and_layers():
    proc = _cli("probe", "--slot", str(SLOT_BASE))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "isolation level: full"
    for layer in ("network", "filesystem", "seccomp", "uid", "cgroup_memory", "environment"):
        assert any(line.split()[0] == layer and " ok: " in f" {line.split(None, 1)[1]}"
                   for line in proc.stdout.splitlines()[1:]), (layer, proc.stdout)
    assert "stdio tests     one sandbox per submission" in proc.stdout


def test_run_writes_rows_in_order_with_error_rows_for_malformed_input(tmp_path):
    rows = [
        {"id": "ok-py", "language": "python", "code": "print(int(input()) * 2)",
         "tests": [{"input": "2", "output": "4"}, {"input": "5", "output": "11"}]},
        "this line is not json",
        {"id": "no-code", "language": "python", "tests": [{"input": "", "output": ""}]},
        {"id": "bad-lang", "language": "cobol", "code": "x", "test_program": "y"},
        {"id": "bad-checker", "language": "python", "code": "print(1)", "checker": [],
         "tests": [{"input": "", "output": "1"}]},
        {"id": "prog", "language": "python", "code": "def f():\n    return 1\n",
         "test_program": "assert f() == 1\n"},
        {"id": "call", "language": "python", "code": "def sq(x):\n    return x * x\n",
         "entry_point": "sq", "inputs": [[2], [3]], "expected": [4, 9]},
        {"id": "ce", "language": "cpp", "code": "int main() { return }", "checker": "exact",
         "tests": [{"input": "", "output": ""}], "time_limit_s": 2},
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "out.jsonl"
    proc = _cli("run", "--input", str(src), "--output", str(out), "--workers", "2",
                "--slot-base", str(SLOT_BASE))
    assert proc.returncode == 0, proc.stderr
    assert "sandbox: 100%" in proc.stderr  # tqdm progress bar on stderr
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in got] == ["ok-py", "line2", "no-code", "bad-lang", "bad-checker",
                                    "prog", "call", "ce"]
    by_id = {r["id"]: r for r in got}
    assert by_id["ok-py"]["status"] == "WA" and by_id["ok-py"]["pass_rate"] == 0.5
    assert [t["status"] for t in by_id["ok-py"]["tests"]] == ["OK", "WA"]
    assert all(t["time_s"] > 0 for t in by_id["ok-py"]["tests"])
    assert by_id["ok-py"]["isolation"] == "full"
    assert by_id["line2"]["status"] == "InfraError" and by_id["line2"]["pass_rate"] is None
    assert ":2: malformed row" in by_id["line2"]["detail"]
    assert "'code'" in by_id["no-code"]["detail"]
    assert "cobol" in by_id["bad-lang"]["detail"]
    assert "'checker'" in by_id["bad-checker"]["detail"]
    assert by_id["bad-checker"]["pass_rate"] is None
    assert by_id["prog"]["status"] == "OK" and by_id["prog"]["pass_rate"] == 1.0
    assert by_id["call"]["status"] == "OK" and len(by_id["call"]["tests"]) == 2
    assert by_id["ce"]["status"] == "CE" and by_id["ce"]["compile"]["status"] == "CE"
    assert "error" in by_id["ce"]["compile"]["stderr"]
    assert "CE=1" in proc.stderr and "InfraError=4" in proc.stderr


def test_run_missing_input_file_is_a_clear_error(tmp_path):
    proc = _cli("run", "--input", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "o"))
    assert proc.returncode == 2 and "nope.jsonl" in proc.stderr


def test_run_with_sandboxfusion_backend_against_loopback_server_backed_by_local_executor(tmp_path):
    from sandboxfusion_loopback import LoopbackSandboxFusion

    from aletheia_ray.sandbox.executor import Executor

    rows = [{"id": "sf-ok", "language": "python", "code": "print(sum(map(int, input().split())))",
             "tests": [{"input": "1 2", "output": "3"}, {"input": "2 2", "output": "5"}]},
            {"id": "sf-bad", "language": "python"}]
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with Executor(slot=SLOT_BASE + 2) as ex, LoopbackSandboxFusion(ex) as server:
        proc = _cli("run", "--input", str(src), "--output", str(out), "--backend",
                    "sandboxfusion", "--url", server.url, "--workers", "2")
        served = len(server.requests)
    assert proc.returncode == 0, proc.stderr
    got = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert [t["status"] for t in got["sf-ok"]["tests"]] == ["OK", "WA"]
    assert got["sf-ok"]["pass_rate"] == 0.5 and served == 2  # one /run_code request per test
    assert got["sf-bad"]["status"] == "InfraError" and "'code'" in got["sf-bad"]["detail"]
