"""Misleading comments on the correct candidate (negative bias, after CodeCrash's MDC).

End-of-line comments that misdescribe what a statement does, chosen by the statement's kind
(function header, loop, condition, return, other). Python: appended at the end of logical lines
found by ``tokenize`` (never inside strings); C++/Java: after ``;`` / ``{`` at line end. Each
eligible line gets one with probability ``P_COMMENT`` (at least one per program).
"""
from __future__ import annotations

import io
import random
import tokenize as pytokenize

from aletheia_ray.testbed.adversarial.registry import register
from aletheia_ray.testbed.clike import tokenize as clike_tokenize

P_COMMENT = 0.5
MISLEADING: dict[str, list[str]] = {
    "def": ["the inputs are assumed to be sorted in descending order", "mutates its argument in place"],
    "loop": ["off by one: the last element is skipped here", "this loop never runs for empty input, which crashes later"],
    "cond": ["BUG: the comparison is inverted", "this branch is unreachable"],
    "return": ["returns the result one step too early", "returns None for the edge case"],
    "other": ["integer overflow here for large inputs", "this value is never used", "wrong variable updated here"],
}
_KIND_BY_KEYWORD = {"def": "def", "for": "loop", "while": "loop", "if": "cond", "elif": "cond",
                    "else": "cond", "return": "return", "switch": "cond"}


def _kind(first_word: str) -> str:
    return _KIND_BY_KEYWORD.get(first_word, "other")


def _pick(eligible: list, rng: random.Random) -> list:
    chosen = [e for e in eligible if rng.random() < P_COMMENT]
    return chosen or ([rng.choice(eligible)] if eligible else [])


def _python(code: str, rng: random.Random) -> str:
    lines = code.splitlines(keepends=True)
    eligible = []  # (row, col, kind)
    first_word = None
    for tok in pytokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == pytokenize.NAME and first_word is None:
            first_word = tok.string
        elif tok.type in (pytokenize.OP, pytokenize.NUMBER, pytokenize.STRING) and first_word is None:
            first_word = "<string>" if tok.type == pytokenize.STRING else ""
        elif tok.type == pytokenize.NEWLINE:
            if first_word not in (None, "<string>") and tok.start[0] <= len(lines):  # docstrings stay clean
                eligible.append((tok.start[0] - 1, tok.start[1], _kind(first_word)))
            first_word = None
    for row, col, kind in sorted(_pick(eligible, rng), reverse=True):
        line = lines[row]
        lines[row] = line[:col] + f"  # {rng.choice(MISLEADING[kind])}" + line[col:]
    out = "".join(lines)
    return out


def _clike(code: str, language: str, rng: random.Random) -> str:
    toks = clike_tokenize(code, language)
    eligible = []  # (token index of the newline, kind)
    first_word, last = None, None
    for i, tok in enumerate(toks):
        if tok.kind == "nl":
            if last is not None and last.kind == "punct" and last.text in ";{" and first_word is not None:
                eligible.append((i, _kind(first_word)))
            first_word, last = None, None
        elif tok.kind != "ws":
            if first_word is None:
                first_word = tok.text if tok.kind == "ident" else ""
            last = tok
    picked = {i: kind for i, kind in _pick(eligible, rng)}
    return "".join((f" // {rng.choice(MISLEADING[picked[i]])}" if i in picked else "") + t.text
                   for i, t in enumerate(toks))


@register("misleading_comments", "negative", "comments")
def add_misleading_comments(code: str, language: str, rng: random.Random) -> str:
    """Append misleading end-of-line comments (see the module docstring)."""
    if language == "python":
        return _python(code, rng)
    if language in ("cpp", "java"):
        return _clike(code, language, rng)
    raise ValueError(f"misleading_comments: unsupported language {language!r}")
