"""Host side of call tests: decode the driver's type-tagged values and compare them.

Comparison follows HumanEval+ (evalplus): exact Python equality on plain values; when they differ
and the expected value is a float or a list/tuple of floats, closeness with ``atol`` (1e-6 when
``atol`` is 0) and rtol 1e-7. Values of non-plain types decode to ``Opaque`` which equals only an
identical Opaque, so a returned object cannot fake equality.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

DEFAULT_FLOAT_ATOL = 1e-6
FLOAT_RTOL = 1e-7


class DecodeError(ValueError):
    """The driver sent a value the host cannot decode (a bug or a forged result line)."""


@dataclass(frozen=True)
class Opaque:
    """A value of a non-plain type, known only by its type name and repr."""

    type_name: str
    text: str


def decode(tagged: Any) -> Any:
    if not isinstance(tagged, list) or not tagged or not isinstance(tagged[0], str):
        raise DecodeError(f"malformed tagged value {str(tagged)[:80]!r}")
    tag, rest = tagged[0], tagged[1:]
    try:
        if tag == "none":
            return None
        if tag in ("bool", "str") and isinstance(rest[0], (bool, str)):
            return rest[0]
        if tag == "int" and type(rest[0]) is int:
            return rest[0]
        if tag == "bigint":
            return int(rest[0], 16)
        if tag == "float":
            return float(rest[0])
        if tag == "complex":
            return complex(float(rest[0]), float(rest[1]))
        if tag == "bytes":
            return bytes.fromhex(rest[0])
        if tag in ("list", "tuple", "set", "frozenset"):
            items = [decode(x) for x in rest[0]]
            return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)
        if tag == "dict":
            return {decode(k): decode(v) for k, v in rest[0]}
        if tag == "other":
            return Opaque(str(rest[0]), str(rest[1]))
    except (IndexError, TypeError, ValueError) as exc:
        raise DecodeError(f"malformed {tag!r} value: {exc}") from exc
    raise DecodeError(f"unknown value tag {tag!r}")


def _is_floats(value: Any) -> bool:
    if type(value) is float:
        return True
    return type(value) in (list, tuple) and bool(value) and all(type(v) is float for v in value)


def _close(a: Any, b: float, atol: float) -> bool:
    if type(a) not in (int, float) or isinstance(a, bool):
        return False
    if math.isnan(a) or math.isnan(b):  # as evalplus (np.allclose): NaN is never close
        return False
    return abs(a - b) <= atol + FLOAT_RTOL * abs(b)


def values_match(out: Any, expected: Any, atol: float = 0.0, loose_sequences: bool = False) -> bool:
    """``loose_sequences``: expected came from JSON, so a returned tuple may equal a list."""
    if loose_sequences:
        out = _tuples_to_lists(out)
    try:
        if out == expected:  # both sides are decoded plain values (or Opaque): safe to compare
            return True
    except Exception:  # noqa: BLE001 - e.g. comparing exotic decoded values
        return False
    if not _is_floats(expected):
        return False
    tol = atol if atol else DEFAULT_FLOAT_ATOL
    if type(expected) is float:
        return _close(out, expected, tol)
    if type(out) not in (list, tuple) or len(out) != len(expected):
        return False
    return all(_close(a, b, tol) for a, b in zip(out, expected))


def _tuples_to_lists(value: Any) -> Any:
    if type(value) in (list, tuple):
        return [_tuples_to_lists(v) for v in value]
    if type(value) is dict:
        return {k: _tuples_to_lists(v) for k, v in value.items()}
    return value


def decode_call_line(line: bytes) -> dict[str, Any]:
    """One driver result line ``{"i", "ok", "value"|"error"}`` with its value decoded."""
    record = json.loads(line)
    if not isinstance(record, dict) or not isinstance(record.get("i"), int):
        raise DecodeError(f"malformed result line {line[:80]!r}")
    if record.get("ok"):
        record["value"] = decode(record.get("value"))
    return record
