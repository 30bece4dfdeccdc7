"""``aletheia-bench``: listing, dispatch by name (real subprocess, exit code and args pass through),
unknown names. Uses a temporary benchmarks directory via ALETHEIA_BENCHMARKS_DIR."""
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
