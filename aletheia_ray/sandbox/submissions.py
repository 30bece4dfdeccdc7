"""Validate a JSONL row of the CLI format into a ``Submission`` (errors name the field)."""
from __future__ import annotations

from typing import Any

from aletheia_ray.sandbox.checkers import CHECKERS
from aletheia_ray.sandbox.languages import language
from aletheia_ray.sandbox.types import StdioTest, Submission

STYLE_KEYS = ("tests", "test_program", "entry_point")
KNOWN_KEYS = {"id", "language", "code", "tests", "checker", "test_program", "entry_point",
              "inputs", "expected", "reference", "atol", "time_limit_s", "memory_limit_mb",
              "output_limit_mb"}


def _need(cond: bool, field: str, problem: str) -> None:
    if not cond:
        raise ValueError(f"field {field!r}: {problem}")


def submission_from_row(row: dict) -> Submission:
    """Build a Submission from one input row; raises ValueError naming the offending field."""
    if not isinstance(row, dict):
        raise ValueError(f"row: expected a JSON object, got {type(row).__name__}")
    unknown = sorted(set(row) - KNOWN_KEYS)
    _need(not unknown, unknown[0] if unknown else "",
          f"unknown field (known: {sorted(KNOWN_KEYS)})")
    _need("id" in row and isinstance(row["id"], (str, int)) and str(row["id"]) != "", "id",
          "missing or not a non-empty string/int")
    _need(isinstance(row.get("language"), str), "language", "missing or not a string")
    try:
        lang = language(row["language"]).name
    except ValueError as exc:
        raise ValueError(f"field 'language': {exc}") from None
    _need(isinstance(row.get("code"), str), "code", "missing or not a string")
    styles = [k for k in STYLE_KEYS if row.get(k) is not None]
    _need(len(styles) == 1, "tests", f"need exactly one of {STYLE_KEYS}, got {styles or 'none'}")
    kwargs: dict[str, Any] = {"id": str(row["id"]), "language": lang, "code": row["code"]}
    style = styles[0]
    if style == "tests":
        tests = row["tests"]
        _need(isinstance(tests, list) and tests, "tests", "must be a non-empty list")
        parsed = []
        for i, test in enumerate(tests):
            ok = isinstance(test, dict) and isinstance(test.get("input"), str) \
                and isinstance(test.get("output"), str)
            _need(ok, f"tests[{i}]", 'must be {"input": str, "output": str}')
            parsed.append(StdioTest(input=test["input"], output=test["output"]))
        kwargs["tests"] = parsed
        checker = row.get("checker", "tokens")
        _need(isinstance(checker, str) and checker in CHECKERS, "checker", f"unknown {checker!r} (known: {sorted(CHECKERS)})")
        kwargs["checker"] = checker
    elif style == "test_program":
        _need(isinstance(row["test_program"], str), "test_program", "must be a string")
        kwargs["test_program"] = row["test_program"]
    else:
        _need(lang == "python", "entry_point", "call tests are supported for python only")
        _need(isinstance(row["entry_point"], str) and row["entry_point"].isidentifier(),
              "entry_point", "must be a Python identifier")
        inputs = row.get("inputs")
        _need(isinstance(inputs, list) and inputs and all(isinstance(a, list) for a in inputs),
              "inputs", "must be a non-empty list of argument lists")
        has_expected = row.get("expected") is not None
        has_reference = row.get("reference") is not None
        _need(has_expected != has_reference, "expected", "give exactly one of expected|reference")
        if has_expected:
            _need(isinstance(row["expected"], list) and len(row["expected"]) == len(inputs),
                  "expected", f"must be a list as long as inputs ({len(inputs)})")
            kwargs["expected"] = row["expected"]
        else:
            _need(isinstance(row["reference"], str), "reference", "must be a string")
            kwargs["reference"] = row["reference"]
        kwargs.update(entry_point=row["entry_point"], inputs=inputs)
        atol = row.get("atol", 0.0)
        _need(isinstance(atol, (int, float)) and atol >= 0, "atol", "must be a number >= 0")
        kwargs["atol"] = float(atol)
    for key, lo, hi in (("time_limit_s", 0.05, 600.0), ("memory_limit_mb", 32, 65536),
                        ("output_limit_mb", 1, 1024)):
        if row.get(key) is not None:
            value = row[key]
            _need(isinstance(value, (int, float)) and not isinstance(value, bool)
                  and lo <= value <= hi, key, f"must be a number in [{lo}, {hi}]")
            kwargs[key] = int(value) if key != "time_limit_s" else float(value)
    return Submission(**kwargs)
