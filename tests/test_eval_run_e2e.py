"""``aletheia-eval run`` end to end: real Ray + the vLLM rollout pool + the embedded tiny model
(random init) on HumanEval fixture lists, through the real CLI in a subprocess.

The model is untrained, so these tests check files, counts and bookkeeping, not accuracy.
Run under the heavy lock: ``flock /tmp/aletheia-heavy.lock timeout 900 pytest tests/test_eval_run_e2e.py``.
"""
import json
import os
import subprocess
import sys
from math import comb
from pathlib import Path

import pytest

from aletheia_ray.data.lists import load_lists
from aletheia_ray.eval_prompts import plan_eval_prompts
from aletheia_ray.models import resolve_model_path
from aletheia_ray.launch.eval import main
from fixture_paths import SHARED_DATA

REPO = Path(__file__).resolve().parent.parent
FIXTURE = SHARED_DATA / "humaneval_lists_dev.jsonl"
MAX_NEW = 40
needs_fixture = pytest.mark.skipif(not FIXTURE.exists(), reason=f"fixture {FIXTURE} not present")


def eval_run(out: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "aletheia_ray.launch.eval", "run", "--model", "embedded:tiny", "--data", str(FIXTURE),
           "--out", str(out), "--max-new-tokens", str(MAX_NEW), *args]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # start a local Ray
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"exit {done.returncode}\nSTDOUT\n{done.stdout[-3000:]}\nSTDERR\n{done.stderr[-6000:]}"
    return done


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def assert_no_stray_ray():
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "aletheia_eval_ray_" not in ps, "a Ray process started by aletheia-eval run is still alive"


def in_unit_interval(x) -> bool:
    return x is not None and 0.0 <= x <= 1.0


@needs_fixture
@pytest.mark.slow
def test_listwise_run_writes_k_samples_per_list_and_scores_them(tmp_path):
    lists = load_lists(FIXTURE)[:4]
    out = tmp_path / "run"
    done = eval_run(out, "--limit", "4", "--k", "3", "--seed", "1")
    assert "generating (n=3)" in done.stderr  # progress on stderr
    rows = read_jsonl(out / "predictions.jsonl")
    assert [r["idx"] for r in rows] == [str(lst.idx) for lst in lists]
    assert all(set(r) == {"idx", "completions"} and len(r["completions"]) == 3 for r in rows)
    assert not (out / "predictions_reversed.jsonl").exists()
    # seeded samples are independent across lists: vLLM seeds sample c with seed + c, so per-prompt
    # seeds one apart once made sample c of list i replay sample c-1 of list i+1 (same opening tokens)
    openings = [c[:12] for r in rows for c in r["completions"] if len(c) >= 12]
    assert len(openings) >= 8 and len(set(openings)) == len(openings), openings

    m = json.loads((out / "metrics.json").read_text())
    assert m["n_lists"] == m["n_lists_in_data"] == m["n_lists_listwise"] == 4
    assert m["problems"]["lists_without_predictions"]["count"] == 0
    assert m["problems"]["malformed_rows"]["count"] == 0
    assert in_unit_interval(m["parse_rate"]) and in_unit_interval(m["list_acc"])
    assert m["samples_per_list"] == 3 and set(m["sc_at_k"]) >= {"1"}
    assert sum(b["n_lists"] for b in m["by_num_candidates"].values()) == 4
    g = m["generation"]
    assert g["n_generations"] == 12 and g["samples_per_prompt"] == 3
    assert 0 < g["response_length/mean"] <= g["response_length/max"] <= MAX_NEW
    assert g["timing_s/gen"] > 0 and g["perf/throughput"] > 0 and g["dtype"] == "float32"  # the checkpoint's
    assert m["prompts"]["n_prompts"] == 4 and m["prompts"]["too_long"] == []
    assert m["run"]["temperature"] == 0.6 and m["run"]["top_p"] == 0.95

    # the same file through `aletheia-eval score` gives the same numbers
    lim = tmp_path / "lists4.jsonl"
    lim.write_text("".join(line + "\n" for line in FIXTURE.read_text().splitlines()[:4]))
    assert main(["score", "--data", str(lim), "--predictions", str(out / "predictions.jsonl"),
                 "--out", str(tmp_path / "score.json")]) == 0
    s = json.loads((tmp_path / "score.json").read_text())
    for key in ("list_acc", "parse_rate", "sc_at_k", "list_acc_mean_over_samples", "by_language"):
        assert s[key] == m[key], key
    assert_no_stray_ray()


@needs_fixture
@pytest.mark.slow
def test_pairwise_both_orders_with_a_too_long_list_skipped_and_reported(tmp_path):
    from transformers import AutoTokenizer

    lists = load_lists(FIXTURE)[:4]
    tok = AutoTokenizer.from_pretrained(resolve_model_path("embedded:tiny"))
    plan = plan_eval_prompts(lists, tok, mode="pair", max_prompt_tokens=10**6, progress=False)
    longest = {}
    for p in plan.prompts:
        longest[p.idx] = max(longest.get(p.idx, 0), len(p.token_ids))
    ranked = sorted(longest, key=longest.get)
    skipped = ranked[-1]
    assert longest[skipped] > longest[ranked[-2]], "fixture lists tie in prompt length; pick others"
    max_model_len = longest[ranked[-2]] + MAX_NEW  # every list but the longest fits

    out = tmp_path / "pairs"
    eval_run(out, "--limit", "4", "--pairwise", "--both-orders", "--too-long", "skip",
             "--max-model-len", str(max_model_len), "--chunk-size", "7")
    kept = [lst for lst in lists if str(lst.idx) != skipped]
    n_pairs = sum(comb(len(lst.candidates), 2) for lst in kept)
    fwd = read_jsonl(out / "predictions.jsonl")
    rev = read_jsonl(out / "predictions_reversed.jsonl")
    assert len(fwd) == len(rev) == n_pairs
    assert all(r["pair"][0] < r["pair"][1] and len(r["completions"]) == 1 for r in fwd)
    assert sorted((r["idx"], tuple(r["pair"][::-1])) for r in rev) == sorted((r["idx"], tuple(r["pair"])) for r in fwd)
    assert skipped not in {r["idx"] for r in fwd + rev}

    m = json.loads((out / "metrics.json").read_text())
    assert m["n_lists"] == m["n_lists_pairwise"] == 3 and m["n_lists_in_data"] == 4 and m["n_pairs"] == n_pairs
    assert m["problems"]["lists_without_predictions"]["items"] == [skipped]  # reported, not dropped
    assert m["prompts"]["n_lists_skipped_too_long"] == 1 and {t["idx"] for t in m["prompts"]["too_long"]} == {skipped}
    assert -1.0 <= m["kendall_tau_b"] <= 1.0 and in_unit_interval(m["pair_parse_rate"])
    assert m["reversed_order"]["n_pairs"] == n_pairs and m["reversed_order"]["problems"]["invalid_pairs"]["count"] == 0
    assert m["position_bias"]["n_pairs_both_orders"] == n_pairs
    assert m["generation"]["n_generations"] == 2 * n_pairs and m["generation"]["max_model_len"] == max_model_len
    assert_no_stray_ray()


@needs_fixture
def test_too_long_prompts_stop_before_ray_starts_naming_the_lists(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--model", "embedded:tiny", "--data", str(FIXTURE), "--out", str(tmp_path / "x"),
              "--limit", "5", "--max-model-len", "700", "--max-new-tokens", "200"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "exceed 500 prompt tokens" in err and "idx='he_codet_0_0'" in err and "--too-long skip" in err
    assert not (tmp_path / "x").exists()


def test_bad_cli_values_are_named(tmp_path, capsys):
    for args, needle in [(["--k", "0"], "--k must be >= 1"), (["--both-orders"], "--both-orders needs --pairwise"),
                         (["--top-p", "1.5"], "--top-p"), (["--style", "instruct", "--think-prefill"], "--think-prefill")]:
        with pytest.raises(SystemExit):
            main(["run", "--model", "embedded:tiny", "--data", str(FIXTURE), "--out", str(tmp_path), *args])
        assert needle in capsys.readouterr().err
