"""Candidate programs: loading CANDIDATES rows and checking them against the problems.

CANDIDATES rows (JSONL / JSONL.gz), either flat, one program per row:
``problem_id, generator, language, code[, pass_rate]``, or nested, one problem per row (the
scored-candidates fixture): ``task_id|problem_id, [generator], [language], [n_tests],
candidates: [{code, pass_rate?}]``. Missing ``generator`` / ``language`` come from
``candidates.default_generator`` / ``default_language`` in the config, else the row is reported.
A candidate without ``pass_rate`` is executed in the sandbox (``execution.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from aletheia_ray.sandbox.languages import ALIASES, LANGUAGES
from aletheia_ray.testbed.config import CandidatesConfig
from aletheia_ray.data.problems import Problem, read_jsonl
from aletheia_ray.data.report import BuildReport


@dataclass
class Candidate:
    problem_id: str
    generator: str
    language: str
    code: str
    pass_rate: Optional[float]
    where: str  # "file: line N[, candidate K]", for messages
    n_tests: Optional[int] = None  # tests behind a given pass_rate, when the row says


def _norm_language(lang: str) -> str:
    return ALIASES.get(lang.lower(), lang.lower())


def _one(row: dict, item: dict, where: str, cfg: CandidatesConfig) -> Candidate:
    pid = row.get("problem_id", row.get("task_id"))
    if pid in (None, ""):
        raise ValueError("no problem_id/task_id")
    generator = item.get("generator", row.get("generator", cfg.default_generator))
    if not isinstance(generator, str) or not generator:
        raise ValueError("no generator (set candidates.default_generator for rows without one)")
    language = item.get("language", row.get("language", cfg.default_language))
    if not isinstance(language, str) or not language:
        raise ValueError("no language (set candidates.default_language for rows without one)")
    code = item.get("code")
    if not isinstance(code, str) or not code.strip():
        raise ValueError("code missing or empty")
    rate = item.get("pass_rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1):
        raise ValueError(f"pass_rate must be a number in [0, 1], got {rate!r}")
    n_tests = item.get("n_tests", row.get("n_tests"))
    return Candidate(str(pid), generator, _norm_language(language), code,
                     None if rate is None else float(rate), where, n_tests if isinstance(n_tests, int) else None)


def load_candidates(path: str | Path, cfg: CandidatesConfig, report: BuildReport) -> list[Candidate]:
    out: list[Candidate] = []
    for number, row in read_jsonl(path):
        where = f"{path}: line {number}"
        if not isinstance(row, dict):
            report.add("bad_candidate_row", where, "not a JSON object")
            continue
        nested = row.get("candidates")
        items = nested if isinstance(nested, list) else [row]
        if isinstance(nested, list) and not nested:
            report.add("bad_candidate_row", where, "empty candidates list")
        for k, item in enumerate(items):
            at = f"{where}, candidate {k}" if isinstance(nested, list) else where
            try:
                if not isinstance(item, dict):
                    raise ValueError("candidate is not a JSON object")
                out.append(_one(row, item, at, cfg))
            except ValueError as e:
                report.add("bad_candidate_row", at, str(e))
    return out


def check_candidates(cands: list[Candidate], problems: dict[str, Problem], report: BuildReport) -> list[Candidate]:
    """Keep candidates whose problem exists and whose language the sandbox and tests support."""
    kept = []
    for c in cands:
        problem = problems.get(c.problem_id)
        if c.language not in LANGUAGES:
            report.add("unsupported_language", c.where,
                       f"language {c.language!r} of problem {c.problem_id}; the sandbox runs {sorted(LANGUAGES)}")
        elif problem is None:
            report.add("unknown_problem", c.problem_id, f"{c.where}: candidate for a problem not in PROBLEMS "
                       "(or filtered out; see the problem issues)")
        elif c.language not in problem.languages:
            report.add("unsupported_language", c.where,
                       f"problem {c.problem_id} has tests for {list(problem.languages)}, candidate is {c.language}")
        else:
            if c.pass_rate is not None and c.n_tests is not None and c.n_tests != problem.n_tests:
                report.add("n_tests_mismatch", c.where, f"problem {c.problem_id}: pass rate measured on {c.n_tests} "
                           f"tests, PROBLEMS has {problem.n_tests}; the given pass rate is used")
            kept.append(c)
    return kept
