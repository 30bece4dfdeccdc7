"""Verifier-list loading (JSONL, .gz, parquet), validation messages, saving, permutation, pairs."""
from __future__ import annotations

from fixture_paths import SHARED_DATA
import gzip
import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aletheia_ray.data import (
    DataError, VerifierList, all_pairs, load_lists, pair_preference, permute_candidates, save_lists,
    validate_list,
)

FIXTURE = SHARED_DATA / "humaneval_lists_dev.jsonl"


def good_row(**changes) -> dict:
    row = {
        "idx": "t_0", "prompt_id": "P/0", "query": "Add two numbers.", "generator": "g", "language": "python",
        "num_candidates": 3, "candidates": ["def f(a,b): return a-b", "def f(a,b): return a+b", "def f(a,b): return 0"],
        "chosen_position": 1, "chosen_answer": "B", "pass_rates": [0.25, 1.0, 0.0],
        "easy_hard": "easy", "weak_strong": "weak", "source": "hand", "n_tests": 4,
    }
    row.update(changes)
    return {k: v for k, v in row.items() if v is not _DROP}


_DROP = object()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_fixture_loads_all_212_lists_consistently():
    lists = load_lists(FIXTURE)
    assert len(lists) == 212
    assert len({lst.idx for lst in lists}) == 212
    for lst in lists:
        assert 2 <= len(lst.candidates) == lst.num_candidates == len(lst.pass_rates) <= 5
        assert lst.pass_rates[lst.chosen_position] == 1.0
        assert lst.chosen_answer == "ABCDE"[lst.chosen_position]
        assert lst.language == "python" and lst.prompt_id.startswith("HumanEval/")
        assert set(lst.extra) == {"n_tests"} and lst.extra["n_tests"] > 0
    assert sorted({len(lst.candidates) for lst in lists}) == [2, 3, 4, 5]


def test_known_columns_and_extra_columns(tmp_path):
    (lst,) = load_lists(write_jsonl(tmp_path / "a.jsonl", [good_row()]))
    assert (lst.idx, lst.chosen_position, lst.chosen_answer, lst.easy_hard) == ("t_0", 1, "B", "easy")
    assert lst.extra == {"n_tests": 4}
    assert lst.to_row()["n_tests"] == 4


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".parquet"])
def test_save_load_round_trip(tmp_path, suffix):
    lists = load_lists(FIXTURE)[:25]
    out = save_lists(lists, tmp_path / f"lists{suffix}")
    assert load_lists(out) == lists
    if suffix == ".jsonl.gz":
        with gzip.open(out, "rt") as f:
            assert json.loads(f.readline())["idx"] == lists[0].idx


def test_parquet_written_by_pyarrow_in_released_layout(tmp_path):
    """A parquet file written outside our save_lists (like the released Aletheia-Bench files)."""
    rows = [good_row(), good_row(idx="t_1", candidates=["x = 1", "y = 2"], pass_rates=[1.0, 0.5],
                                 chosen_position=0, chosen_answer="A", num_candidates=2, easy_hard=None)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "bench.parquet")
    lists = load_lists(tmp_path / "bench.parquet")
    assert [lst.idx for lst in lists] == ["t_0", "t_1"]
    assert lists[1].pass_rates == [1.0, 0.5] and lists[1].easy_hard == "" and lists[1].chosen_answer == "A"


def test_parquet_bad_row_names_row_number(tmp_path):
    rows = [good_row(), good_row(idx="t_9", pass_rates=[0.5, 0.9, 0.0])]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "bad.parquet")
    with pytest.raises(DataError, match=r"bad\.parquet: row 2 \(idx='t_9'\): needs exactly one candidate with pass rate 1\.0"):
        load_lists(tmp_path / "bad.parquet")


BAD_ROWS = [
    (dict(candidates=["only one"], pass_rates=[1.0], num_candidates=1, chosen_position=0, chosen_answer="A"),
     "has 1 candidates; a list needs 2-5"),
    (dict(candidates=["a"] * 6, pass_rates=[1.0] + [0.0] * 5, num_candidates=6, chosen_position=0, chosen_answer="A"),
     "has 6 candidates"),
    (dict(pass_rates=[0.25, 1.0]), "has 2 pass_rates for 3 candidates"),
    (dict(pass_rates=[1.5, 1.0, 0.0]), "pass rate of candidate A is 1.5, outside"),
    (dict(pass_rates=[-0.1, 1.0, 0.0]), "pass rate of candidate A is -0.1"),
    (dict(pass_rates=[1.0, 1.0, 0.0]), r"exactly one candidate with pass rate 1\.0, found 2 \(A, B\)"),
    (dict(pass_rates=[0.2, 0.9, 0.0]), r"found 0 \(none\)"),
    (dict(chosen_position=2), "chosen_position 2 but the candidate with pass rate 1.0 is at 1"),
    (dict(chosen_answer="C"), "chosen_answer 'C' but the correct candidate is 'B'"),
    (dict(num_candidates=4), "num_candidates is 4 but there are 3 candidates"),
    (dict(pass_rates=_DROP), "missing required field pass_rates"),
    (dict(query=_DROP, chosen_answer=_DROP), "missing required fields query, chosen_answer"),
    (dict(pass_rates=["1.0", 0.5, 0]), "pass_rates must be a list of numbers"),
    (dict(candidates="def f(): pass"), "candidates must be a list of strings"),
    (dict(candidates=["x", "  ", "z"]), "candidate B is empty"),
]


@pytest.mark.parametrize("changes,expected", BAD_ROWS)
def test_each_validation_error_names_file_row_and_idx(tmp_path, changes, expected):
    path = write_jsonl(tmp_path / "d.jsonl", [good_row(idx="ok_1"), good_row(idx="bad_2", **changes)])
    with pytest.raises(DataError) as e:
        load_lists(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: row 2 (idx='bad_2'): "), msg
    assert __import__("re").search(expected, msg), msg


def test_missing_idx_and_malformed_json_are_named(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [good_row(idx=_DROP)])
    with pytest.raises(DataError, match=r"row 1 \(no idx\): missing required field idx"):
        load_lists(path)
    path.write_text(json.dumps(good_row()) + "\n\n{not json\n")
    with pytest.raises(DataError, match=r"d\.jsonl: row 3: not valid JSON"):
        load_lists(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(DataError, match="row 1: expected a JSON object, got list"):
        load_lists(path)


def test_duplicate_idx_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [good_row(), good_row()])
    with pytest.raises(DataError, match=r"row 2 \(idx='t_0'\): idx repeats row 1"):
        load_lists(path)


def test_collect_mode_returns_good_rows_and_every_error(tmp_path):
    rows = [good_row(idx="a"), good_row(idx="b", chosen_answer="A"), good_row(idx="c"),
            good_row(idx="d", pass_rates=[0.0, 0.0, 0.0])]
    lists, errors = load_lists(write_jsonl(tmp_path / "d.jsonl", rows), on_error="collect")
    assert [lst.idx for lst in lists] == ["a", "c"]
    assert len(errors) == 2
    assert "row 2 (idx='b')" in str(errors[0]) and "row 4 (idx='d')" in str(errors[1])


def test_file_level_errors(tmp_path):
    with pytest.raises(DataError, match="list file not found"):
        load_lists(tmp_path / "none.jsonl")
    with pytest.raises(DataError, match="unknown list file format"):
        load_lists(tmp_path / "x.csv")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="holds no rows"):
        load_lists(tmp_path / "empty.jsonl")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="not a readable parquet file"):
        load_lists(tmp_path / "junk.parquet")
    with pytest.raises(ValueError, match="on_error"):
        load_lists(FIXTURE, on_error="skip")


def test_validate_record_and_save_refuses_bad_record(tmp_path):
    lst = validate_list(good_row(), where="mem")
    assert validate_list(lst) == lst
    bad = VerifierList(idx="z", query="q", candidates=["a", "b"], pass_rates=[1.0, 0.0], chosen_position=1,
                       chosen_answer="B")
    with pytest.raises(DataError, match=r"item 1 \(idx='z'\): chosen_position 1"):
        save_lists([lst, bad], tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()
    # A record built in code with num_candidates left at its default gets it filled.
    fixed = validate_list(VerifierList(idx="z", query="q", candidates=["a", "b"], pass_rates=[0.0, 1.0],
                                       chosen_position=1, chosen_answer="B"))
    assert fixed.num_candidates == 2


def test_integer_idx_becomes_string(tmp_path):
    (lst,) = load_lists(write_jsonl(tmp_path / "d.jsonl", [good_row(idx=17)]))
    assert lst.idx == "17"


def test_permutation_keeps_answer_and_pass_rates_attached():
    lst = load_lists(FIXTURE)[0]  # 5 candidates, correct is B
    moved = permute_candidates(lst, [4, 3, 2, 1, 0])
    assert moved.candidates == lst.candidates[::-1] and moved.pass_rates == lst.pass_rates[::-1]
    assert moved.chosen_position == 4 - lst.chosen_position
    assert moved.chosen_answer == "ABCDE"[moved.chosen_position]
    assert moved.candidates[moved.chosen_position] == lst.candidates[lst.chosen_position]
    assert validate_list(moved) == moved
    assert lst.candidates[0] != moved.candidates[0]  # the input is not modified


def test_random_permutations_are_seeded_and_cover_every_position():
    lst = validate_list(good_row())
    seen = {permute_candidates(lst, rng=random.Random(s)).chosen_answer for s in range(60)}
    assert seen == {"A", "B", "C"}
    assert permute_candidates(lst, rng=5) == permute_candidates(lst, rng=5)
    with_numpy = permute_candidates(lst, rng=np.random.default_rng(0))
    assert with_numpy.pass_rates[with_numpy.chosen_position] == 1.0
    for perm in ([0, 1], [0, 0, 1], [0, 1, 3]):
        with pytest.raises(ValueError, match="not a permutation"):
            permute_candidates(lst, perm)


def test_all_pairs_and_pair_preference():
    lst = validate_list(good_row())  # pass rates 0.25, 1.0, 0.0
    assert all_pairs(lst) == [(0, 1), (0, 2), (1, 2)]
    assert all_pairs(lst, both_orders=True) == [(0, 1), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1)]
    assert [pair_preference(lst, i, j) for i, j in all_pairs(lst)] == ["B", "A", "A"]
    tie = validate_list(good_row(pass_rates=[0.5, 1.0, 0.5]))
    assert pair_preference(tie, 0, 2) is None
