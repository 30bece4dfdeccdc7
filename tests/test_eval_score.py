"""``aletheia-eval score``: joining, problem reporting, and the issue's done-when checks on the
real HumanEval fixture lists through the real CLI."""
import json
import os
import random
import shutil
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import pytest

from aletheia_ray.data.records import VerifierList
from aletheia_ray.evaluation import load_predictions, score_predictions
from aletheia_ray.metrics import binomial_std_list_acc, random_baseline_list_acc
from aletheia_ray.launch.eval import main
from fixture_paths import SHARED_DATA

FIXTURE = SHARED_DATA / "humaneval_lists_dev.jsonl"
assert FIXTURE.is_file(), f"fixture {FIXTURE} is missing: these tests need ../shared/data beside the repo"
ROWS = [json.loads(line) for line in FIXTURE.open()]


def box(letter):
    return f"<think>reasoning</think>\\boxed{{{letter}}}"


def make_list(idx, pass_rates, language="python"):
    pos = pass_rates.index(1.0)
    return VerifierList(idx=idx, query="q", candidates=[f"c{i}" for i in range(len(pass_rates))],
                        pass_rates=pass_rates, chosen_position=pos, chosen_answer="ABCDE"[pos], language=language)


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def run_cli(tmp_path, preds, *extra, data=FIXTURE):
    out = tmp_path / "metrics.json"
    assert main(["score", "--data", str(data), "--predictions", str(write_jsonl(tmp_path / "p.jsonl", preds)),
                 "--out", str(out), *extra]) == 0
    return json.loads(out.read_text())


def pairwise_rows(prefer_higher):
    rows = []
    for r in ROWS:
        for i, j in combinations(range(r["num_candidates"]), 2):
            higher_is_i = r["pass_rates"][i] > r["pass_rates"][j]
            rows.append({"idx": r["idx"], "pair": [i, j], "completions": [box("A" if higher_is_i == prefer_higher else "B")]})
    return rows


def test_problems_are_reported_not_dropped(tmp_path):
    lists = [make_list("a", [1.0, 0.5, 0.0]), make_list("b", [0.3, 1.0], "cpp"), make_list("c", [1.0, 0.2])]
    path = write_jsonl(tmp_path / "p.jsonl", [
        {"idx": "a", "completions": [box("A"), "no box", box("B"), box("B")]},  # row 1
        "{not json",                                                        # row 2
        {"idx": "b", "completions": []},                                    # row 3
        {"idx": "zzz", "completions": [box("A")]},                          # row 4
        {"idx": "b", "completions": [box("A")]},                            # row 5
        {"idx": "a", "completions": [box("C")]},                            # row 6: duplicate
        {"idx": "a", "pair": [0, 0], "completions": [box("A")]},            # row 7: invalid pair
        {"idx": "a", "pair": [0, 1], "completions": [box("A")]},            # row 8
        {"idx": "a", "pair": [1, 0], "completions": [box("B")]},            # row 9: reversed repeat
        {"idx": "a", "pair": [0, 1], "completions": [box("A")], "x": 1},    # row 10: unknown key
    ])
    preds = load_predictions(path)
    assert [m["row"] for m in preds.malformed] == [2, 3, 10]
    m = score_predictions(lists, preds, style="think")
    p = m["problems"]
    assert p["malformed_rows"]["count"] == 3
    assert p["unknown_idx"]["items"] == [{"row": 4, "idx": "zzz"}]
    assert p["duplicate_predictions"]["items"][0] == {"row": 6, "idx": "a", "pair": None, "first_row": 1}
    assert [x["row"] for x in p["invalid_pairs"]["items"]] == [7, 9]
    assert "already given at row 8" in p["invalid_pairs"]["items"][1]["error"]
    assert p["lists_without_predictions"]["items"] == ["c"]
    assert p["lists_with_missing_pairs"]["items"] == [{"idx": "a", "pairs": 1}]
    assert (m["n_lists"], m["n_lists_in_data"], m["n_lists_listwise"]) == (2, 3, 2)
    assert m["list_acc"] == 0.5                               # a: A correct; b: A wrong
    assert (m["list_acc_over_data"], m["n_lists_missing_listwise"]) == (pytest.approx(1 / 3), 1)  # c: no row = wrong
    # file has both kinds: a lacks 2 of its 3 pairs, b has no pairs, c has nothing
    assert m["incomplete_lists"] == {"count": 3, "items": ["a", "b", "c"]}
    assert m["list_acc_mean_over_samples"] == pytest.approx((1 / 4 + 0) / 2)
    assert m["list_parse_rate"] == pytest.approx(4 / 5)       # "no box" fails
    assert m["parse_rate"] == pytest.approx(5 / 6)            # plus the one valid pairwise sample
    # a: SC@2 votes [A, -] -> A (right), SC@4 votes [A, -, B, B] -> B (wrong); b has one sample
    assert m["sc_at_k"] == {"1": 0.5, "2": 1.0, "4": 0.0} and m["sc_at_k_n_lists"] == {"1": 2, "2": 1, "4": 1}
    assert m["parse_failures"] == {"missing </think>": 1}
    assert m["random_baseline_list_acc"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert set(m["by_language"]) == {"cpp", "python"} and m["by_language"]["cpp"]["list_acc"] == 0.0
    py = m["by_language"]["python"]  # a (right) and c (no prediction) are python
    assert (py["n_lists_in_data"], py["list_acc"], py["list_acc_over_data"], py["n_lists_missing_listwise"]) == (2, 1.0, 0.5, 1)
    assert set(m["by_num_candidates"]) == {"2", "3"}
    # list a, one game 0 beats 1: wins [1, 0, 0] vs pass rates [1, .5, 0] -> 2 concordant, 1 tied in wins: tau-b = 2/sqrt(2 * 3)
    assert m["kendall_tau_b"] == pytest.approx(2 / 6 ** 0.5) and m["pair_acc"] == 1.0


def test_undefined_tau_option(tmp_path):
    lists = [make_list("a", [1.0, 0.5, 0.0]), make_list("b", [0.0, 1.0, 0.5])]
    preds = [{"idx": "a", "pair": list(p), "completions": [box("A")]} for p in combinations(range(3), 2)]
    preds += [{"idx": "b", "pair": list(p), "completions": ["unparseable"]} for p in combinations(range(3), 2)]
    loaded = load_predictions(write_jsonl(tmp_path / "p.jsonl", preds))
    minus = score_predictions(lists, loaded, tau_undefined="minus_one")
    skip = score_predictions(lists, loaded, tau_undefined="skip")
    assert (minus["kendall_tau_b"], minus["kendall_tau_undefined_lists"]) == (0.0, 1)  # (1 + -1) / 2
    assert minus["kendall_tau_undefined_rounds"] == 1 and minus["samples_per_pair"] == 1
    assert skip["kendall_tau_b"] == 1.0 and skip["list_acc"] is None and skip["sc_at_k"] is None


def test_kendall_tau_averages_every_sample_of_every_pair(tmp_path):
    lst = make_list("a", [1.0, 0.5, 0.0])
    # sample 0 of each pair prefers the higher pass rate (tau 1), sample 1 the lower (tau -1)
    preds = [{"idx": "a", "pair": [i, j], "completions": [box("A"), box("B")]} for i, j in combinations(range(3), 2)]
    m = score_predictions([lst], load_predictions(write_jsonl(tmp_path / "p.jsonl", preds)))
    assert m["kendall_tau_b"] == pytest.approx(0.0)  # the first sample alone would say 1.0
    assert (m["pair_acc"], m["samples_per_pair"], m["n_pairs"], m["pair_parse_rate"]) == (0.5, 2, 3, 1.0)
    assert m["kendall_tau_undefined_rounds"] == 0 and m["incomplete_lists"]["count"] == 0
    # a pair with a third sample: tau reads 2 rounds (the fewest), the list is reported
    preds[0]["completions"].append(box("B"))
    m = score_predictions([lst], load_predictions(write_jsonl(tmp_path / "p.jsonl", preds)))
    assert m["kendall_tau_b"] == pytest.approx(0.0) and m["pair_acc"] == pytest.approx(3 / 7)
    assert m["problems"]["lists_with_unequal_pair_samples"]["items"] == [{"idx": "a", "min": 2, "max": 3}]


def test_list_acc_over_data_and_require_complete(tmp_path, capsys):
    lists = [make_list(f"l{k}", [1.0, 0.0]) for k in range(8)]  # correct: A
    data = write_jsonl(tmp_path / "data.jsonl", [{**lst.to_row(), "num_candidates": 2} for lst in lists])
    preds = [{"idx": "l0", "completions": [box("A")]}, {"idx": "l1", "completions": [box("B")]}]
    m = run_cli(tmp_path, preds, data=data)
    assert (m["list_acc"], m["list_acc_over_data"], m["n_lists_missing_listwise"]) == (0.5, 1 / 8, 6)
    assert m["incomplete_lists"] == {"count": 6, "items": [f"l{k}" for k in range(2, 8)]}
    out = tmp_path / "strict.json"
    code = main(["score", "--data", str(data), "--predictions", str(tmp_path / "p.jsonl"), "--out", str(out),
                 "--require-complete"])
    err = capsys.readouterr().err
    assert code == 1 and out.is_file()  # metrics are still written
    assert f"6 of 8 lists in {data} lack predictions" in err and "l2, l3, l4, l5, l6, ..." in err and "l7" not in err
    full = write_jsonl(tmp_path / "full.jsonl", [{"idx": lst.idx, "completions": [box("A")]} for lst in lists])
    assert main(["score", "--data", str(data), "--predictions", str(full), "--out", str(out), "--require-complete"]) == 0
    assert json.loads(out.read_text())["list_acc_over_data"] == 1.0


def test_installed_console_script_scores_a_tiny_file(tmp_path):
    exe = shutil.which("aletheia-eval")
    assert exe, "the console script aletheia-eval is not on PATH: pip install -e '.[cpu,dev]'"
    data = write_jsonl(tmp_path / "data.jsonl", ROWS[:3])
    preds = write_jsonl(tmp_path / "p.jsonl", [
        {"idx": ROWS[0]["idx"], "completions": [box(ROWS[0]["chosen_answer"])] * 2},
        {"idx": ROWS[1]["idx"], "completions": ["no verdict", box(ROWS[1]["chosen_answer"])]},
    ])
    out = tmp_path / "m.json"
    cmd = [exe, "score", "--data", str(data), "--predictions", str(preds), "--out", str(out)]
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in done.stdout.splitlines()
            if line.count("│") == 3}
    # row 0 right, row 1 unparseable first sample, row 2 missing
    assert rows["list_acc"] == "0.5000" and rows["list_acc_over_data"] == "0.3333"
    assert rows["n_lists_missing_listwise"] == "1" and rows["parse_rate"] == "0.7500"
    assert rows["sc_at_k[2]"] == "1.0000" and rows["n_lists_in_data"] == "3"
    assert json.loads(out.read_text())["list_acc_over_data"] == pytest.approx(1 / 3)
    done = subprocess.run(cmd + ["--require-complete"], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1 and f"1 of 3 lists in {data} lack predictions" in done.stderr
    assert done.stderr.rstrip().endswith(ROWS[2]["idx"])


def test_done_when_a_always_correct(tmp_path):
    m = run_cli(tmp_path, [{"idx": r["idx"], "completions": [box(r["chosen_answer"])] * 2} for r in ROWS])
    assert (m["list_acc"], m["parse_rate"], m["n_lists"]) == (1.0, 1.0, len(ROWS))
    assert m["sc_at_k"] == {"1": 1.0, "2": 1.0}
    assert all(info["count"] == 0 for info in m["problems"].values())
    assert m["by_language"]["python"]["list_acc"] == 1.0


def test_strict_flag_rejects_text_around_the_box(tmp_path):
    preds = [{"idx": r["idx"], "completions": [f"<think>x</think>So: \\boxed{{{r['chosen_answer']}}}"]} for r in ROWS]
    assert run_cli(tmp_path, preds)["list_acc"] == 1.0
    strict = run_cli(tmp_path, preds, "--strict")
    assert (strict["list_acc"], strict["parse_rate"], strict["strict"]) == (0.0, 0.0, True)
    assert strict["parse_failures"] == {"text around the boxed answer (strict format)": len(ROWS)}


def test_done_when_b_uniform_random_letters_match_the_analytic_baseline(tmp_path):
    rng, k = random.Random(0), 64
    preds = [{"idx": r["idx"], "completions": [box("ABCDE"[rng.randrange(r["num_candidates"])]) for _ in range(k)]}
             for r in ROWS]
    m = run_cli(tmp_path, preds, "--style", "think")
    sizes = [r["num_candidates"] for r in ROWS]
    baseline = random_baseline_list_acc(sizes)
    assert m["random_baseline_list_acc"] == pytest.approx(baseline)
    assert abs(m["list_acc_mean_over_samples"] - baseline) < 3 * binomial_std_list_acc(sizes, k)
    assert abs(m["list_acc"] - baseline) < 3 * binomial_std_list_acc(sizes, 1)
    assert m["parse_rate"] == 1.0 and m["samples_per_list"] == k
    for n, block in m["by_num_candidates"].items():
        assert block["random_baseline_list_acc"] == pytest.approx(1 / int(n))


@pytest.mark.parametrize("prefer_higher,tau", [(True, 1.0), (False, -1.0)])
def test_done_when_c_pairwise_tournament_tau(tmp_path, prefer_higher, tau):
    m = run_cli(tmp_path, pairwise_rows(prefer_higher), "--tau-undefined", "minus_one")
    assert m["kendall_tau_b"] == pytest.approx(tau)
    assert m["kendall_tau_undefined_lists"] == 0 and m["pair_acc"] == (1.0 if prefer_higher else 0.0)
    assert m["n_lists_pairwise"] == len(ROWS) and m["problems"]["lists_with_missing_pairs"]["count"] == 0


def test_console_script_prints_a_table_and_names_bad_files(tmp_path):
    preds = write_jsonl(tmp_path / "p.jsonl", [{"idx": ROWS[0]["idx"], "completions": [box("A")]}])
    out = tmp_path / "m.json"
    cmd = [sys.executable, "-m", "aletheia_ray.launch.eval", "score", "--data", str(FIXTURE), "--predictions", str(preds),
           "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr
    assert "list_acc" in done.stdout and "lists_without_predictions" in done.stdout
    assert json.loads(out.read_text())["problems"]["lists_without_predictions"]["count"] == len(ROWS) - 1
    missing = cmd[:]
    missing[missing.index(str(preds))] = str(tmp_path / "nope.jsonl")
    done = subprocess.run(missing, capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1])
    assert done.returncode == 2 and "nope.jsonl" in done.stderr
