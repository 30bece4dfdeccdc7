"""Coding problems with their tests, in one of the sandbox's test styles.

PROBLEMS rows (JSONL / JSONL.gz), one per problem, in one of these layouts:

* generic: ``problem_id`` (or ``id`` / ``task_id``), ``query`` (or ``prompt`` / ``description``),
  optional ``language`` (needed for ``test_program``), ``time_limit_s``, ``memory_limit_mb``,
  ``source``, and exactly one sandbox test style: ``tests`` [{input, output}] (+ ``checker``) |
  ``test_program`` | ``entry_point`` + ``inputs`` + (``expected`` | ``reference``) + ``atol``;
* HumanEval-X (``task_id`` like ``CPP/3``, ``declaration``, ``test``): the ``test`` program in
  the language named by the task id prefix;
* HumanEval+ release (``entry_point``, ``canonical_solution``, ``base_input``, ``plus_input``):
  call tests on the first ``max_call_inputs`` inputs (base, then plus), expected outputs from the
  canonical solution (``reference`` = prompt + canonical_solution), ``atol`` kept.

Stdio problems accept candidates in every sandbox language; test-program problems only in their
own language; call tests only in Python. Problems without tests or with malformed tests are
reported by id, not dropped silently.
"""
from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from pydantic import Field

from aletheia_ray.config import StrictModel
from aletheia_ray.data.report import BuildReport
from aletheia_ray.sandbox.languages import LANGUAGES
from aletheia_ray.sandbox.submissions import submission_from_row
from aletheia_ray.sandbox.types import Submission

TEST_KEYS = ("tests", "checker", "test_program", "entry_point", "inputs", "expected", "reference", "atol")
ID_KEYS, QUERY_KEYS = ("problem_id", "id", "task_id"), ("query", "prompt", "description")


class ProblemsConfig(StrictModel):
    min_tests: int = Field(5, ge=1)  # paper filter: enough tests for a meaningful pass rate
    max_time_limit_s: Optional[float] = Field(None, gt=0)  # paper filter: drop slow problems
    default_time_limit_s: float = Field(10.0, gt=0)  # for rows without time_limit_s
    max_call_inputs: int = Field(60, ge=1)  # HumanEval+: first N of base_input + plus_input


@dataclass
class Problem:
    problem_id: str
    query: str
    tests: dict[str, Any]  # sandbox test-style fields (see TEST_KEYS)
    n_tests: int
    languages: tuple[str, ...]  # candidate languages these tests can judge
    time_limit_s: float
    memory_limit_mb: Optional[int] = None
    source: str = ""
    fingerprint: str = field(default="", repr=False)

    def submission(self, sub_id: str, language: str, code: str) -> Submission:
        row = {"id": sub_id, "language": language, "code": code, **self.tests,
               "time_limit_s": self.time_limit_s}
        if self.memory_limit_mb is not None:
            row["memory_limit_mb"] = self.memory_limit_mb
        return submission_from_row(row)


def read_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) per non-blank line; a malformed line raises naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {number}: malformed JSON ({e.msg})") from None


def _first(row: dict, keys: tuple[str, ...]) -> Any:
    return next((row[k] for k in keys if row.get(k) not in (None, "")), None)


def _humaneval_plus_tests(row: dict, cfg: ProblemsConfig) -> dict[str, Any]:
    inputs = list(row.get("base_input") or []) + list(row.get("plus_input") or [])
    return {"entry_point": row["entry_point"], "inputs": inputs[: cfg.max_call_inputs],
            "reference": row["prompt"] + row["canonical_solution"], "atol": float(row.get("atol") or 0.0)}


def problem_from_row(row: dict, cfg: ProblemsConfig) -> Problem:
    """One PROBLEMS row -> ``Problem``; raises ValueError naming what is wrong (incl. 'no tests')."""
    pid = _first(row, ID_KEYS)
    if pid is None:
        raise ValueError(f"no problem id (one of {ID_KEYS})")
    query = _first(row, QUERY_KEYS)
    if not isinstance(query, str):
        raise ValueError(f"problem {pid}: no problem statement (one of {QUERY_KEYS})")
    row = dict(row)
    if "canonical_solution" in row and "base_input" in row:
        tests = _humaneval_plus_tests(row, cfg)
    elif "declaration" in row and isinstance(row.get("test"), str):
        prefix = str(pid).split("/")[0].lower()
        row.setdefault("language", {"cpp": "cpp", "java": "java", "python": "python"}.get(prefix))
        tests = {"test_program": row["test"]}
    else:
        tests = {k: row[k] for k in TEST_KEYS if row.get(k) is not None}
    if not any(tests.get(k) for k in ("tests", "test_program", "inputs")):
        raise ValueError(f"problem {pid}: no tests")
    if tests.get("test_program"):
        lang = row.get("language")
        if not isinstance(lang, str):
            raise ValueError(f"problem {pid}: a test_program needs the row's `language`")
        languages, n_tests = (lang,), 1
    elif tests.get("entry_point"):
        languages, n_tests = ("python",), len(tests["inputs"])
    else:
        languages, n_tests = tuple(LANGUAGES), len(tests["tests"])
    time_limit = float(row.get("time_limit_s") or cfg.default_time_limit_s)
    problem = Problem(str(pid), query, tests, n_tests, languages, time_limit,
                      row.get("memory_limit_mb"), str(row.get("source") or ""))
    problem.submission("validate", languages[0], "")  # raises on malformed tests, naming the field
    problem.fingerprint = hashlib.sha256(json.dumps(tests, sort_keys=True).encode()).hexdigest()[:16]
    return problem


def load_problems(path: str | Path, cfg: ProblemsConfig, report: BuildReport) -> dict[str, Problem]:
    """Every usable problem by id; bad or filtered problems go to ``report``."""
    problems: dict[str, Problem] = {}
    for number, row in read_jsonl(path):
        where = f"{path}: line {number}"
        if not isinstance(row, dict):
            report.add("bad_problem_row", where, "not a JSON object")
            continue
        ident = str(_first(row, ID_KEYS) or where)
        try:
            problem = problem_from_row(row, cfg)
        except (ValueError, KeyError, TypeError) as e:
            category = "problem_without_tests" if str(e).endswith("no tests") else "bad_problem_row"
            report.add(category, ident, f"{where}: {e}")
            continue
        if problem.problem_id in problems:
            report.add("duplicate_problem", ident, f"{where}: problem id repeats; first row kept")
        elif problem.n_tests < cfg.min_tests:
            report.add("filtered_few_tests", ident, f"{problem.n_tests} tests < problems.min_tests={cfg.min_tests}")
        elif cfg.max_time_limit_s is not None and problem.time_limit_s > cfg.max_time_limit_s:
            report.add("filtered_time_limit", ident,
                       f"time limit {problem.time_limit_s}s > problems.max_time_limit_s={cfg.max_time_limit_s}")
        else:
            problems[problem.problem_id] = problem
    if not problems:
        raise ValueError(f"{path}: no usable problems (see the report: {dict(report.issues)})")
    return problems
