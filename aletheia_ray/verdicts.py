"""Verdict parsing for code verifiers (paper Appendix B): one parser decides "parseable" for
both the format reward and the parse-rate metric (the rewards are in ``aletheia_ray.rewards``).

Completion format
  think:    [<think>] reasoning </think> answer      (the opening tag may sit in the prompt)
  instruct: short reasoning ending with the answer
  answer:   \\boxed{X} with X a letter A.. for the candidates (listwise / pairwise), or
            \\boxed{[s1, ..., sn]} with integer scores 0-10 (ListSc / PairSc).

Format violations (``ok=False``, ``reason`` says which):
  * think: no ``</think>``, more than one ``</think>``, or a ``<think>`` anywhere but the start;
  * no ``\\boxed{`` in the answer part (think: after ``</think>``; boxes inside the reasoning
    are drafts and ignored), or an unterminated ``\\boxed{``;
  * several boxed answers that differ (repeating the same answer is allowed);
  * content that is not one uppercase letter (``\\text{B}``-style wrappers and spaces are
    accepted), or a letter outside the candidates (``E`` for 3 candidates);
  * scores: not a bracketed list of integers, wrong length, or a score outside 0-10;
  * ``strict=True`` (the authors' training regex): the answer part must be exactly the box
    (think) or end with it (instruct); no other text.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from aletheia_ray.data.records import LETTERS
from aletheia_ray.prompts import MAX_SCORE, STYLES

_BOX_OPEN = "\\boxed{"
_WRAPPER = re.compile(r"^\\(?:text|textbf|mathrm|mathbf)\{\s*([^{}]*?)\s*\}$")
_SCORE_LIST = re.compile(r"^\[\s*(-?\d+(?:\s*,\s*-?\d+)*)\s*,?\s*\]$")


@dataclass(frozen=True)
class ParsedVerdict:
    ok: bool
    letter: Optional[str]
    reason: str = ""  # empty when ok


@dataclass(frozen=True)
class ParsedScores:
    ok: bool
    scores: Optional[list[int]]  # kept when well-formed but out of range (PairSc needs them)
    reason: str = ""


def _answer_part(text: str, style: str) -> tuple[Optional[str], str]:
    """Return (answer text, "") or (None, violation)."""
    if style not in STYLES:
        raise ValueError(f"unknown verdict style {style!r}; expected one of {STYLES}")
    if style == "instruct":
        return text, ""
    closes = text.count("</think>")
    if closes == 0:
        return None, "missing </think>"
    if closes > 1:
        return None, f"{closes} </think> tags"
    opens = text.count("<think>")
    if opens > 1 or (opens == 1 and not text.lstrip().startswith("<think>")):
        return None, "stray <think> tag"
    return text.split("</think>", 1)[1], ""


def _boxes(text: str) -> tuple[list[tuple[int, int, str]], str]:
    """All ``\\boxed{...}`` as (start, end, content), braces balanced; or a violation."""
    found, pos = [], text.find(_BOX_OPEN)
    while pos != -1:
        depth, i = 1, pos + len(_BOX_OPEN)
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth:
            return found, "unterminated \\boxed{"
        found.append((pos, i, text[pos + len(_BOX_OPEN) : i - 1]))
        pos = text.find(_BOX_OPEN, i)
    return found, ""


def _unwrap(content: str) -> str:
    wrapped = _WRAPPER.match(content)
    return wrapped.group(1) if wrapped else content


def _single_box(text: str, style: str, strict: bool) -> tuple[Optional[str], str]:
    """The one boxed content of the answer part, or (None, violation)."""
    answer, why = _answer_part(text, style)
    if answer is None:
        return None, why
    boxes, why = _boxes(answer)
    if why:
        return None, why
    if not boxes:
        return None, "no \\boxed{} answer" + (" after </think>" if style == "think" else "")
    contents = {_unwrap(re.sub(r"\s+", "", c)) for _, _, c in boxes}
    if len(contents) > 1:
        return None, f"{len(contents)} different boxed answers"
    if strict:
        start, end, _ = boxes[-1]
        before, after = answer[:start].strip(), answer[end:].strip()
        if after or (style == "think" and (before or len(boxes) > 1)):
            return None, "text around the boxed answer (strict format)"
    return boxes[-1][2].strip(), ""


def parse_verdict(text: str, num_candidates: int, style: str = "think", *, strict: bool = False) -> ParsedVerdict:
    """Parse a listwise/pairwise verdict letter; see the module docstring for violations."""
    if not 2 <= num_candidates <= len(LETTERS):
        raise ValueError(f"num_candidates must be 2-{len(LETTERS)}, got {num_candidates}")
    content, why = _single_box(text, style, strict)
    if content is None:
        return ParsedVerdict(False, None, why)
    content = content if strict else _unwrap(content)
    if len(content) != 1 or content not in LETTERS:
        return ParsedVerdict(False, None, f"boxed answer {content[:20]!r} is not a letter A-E")
    allowed = LETTERS[:num_candidates]
    if content not in allowed:
        return ParsedVerdict(False, None, f"letter {content} out of range A-{allowed[-1]}")
    return ParsedVerdict(True, content)


def parse_scores(text: str, num_candidates: int, style: str = "think", *, strict: bool = False) -> ParsedScores:
    """Parse ``\\boxed{[s1, ..., sn]}`` with n == num_candidates integer scores in 0-10."""
    content, why = _single_box(text, style, strict)
    if content is None:
        return ParsedScores(False, None, why)
    match = _SCORE_LIST.match(content)
    if not match:
        return ParsedScores(False, None, f"boxed answer {content[:30]!r} is not a list of integers")
    scores = [int(s) for s in match.group(1).split(",")]
    if len(scores) != num_candidates:
        return ParsedScores(False, None, f"{len(scores)} scores for {num_candidates} candidates")
    if any(not 0 <= s <= MAX_SCORE for s in scores):
        return ParsedScores(False, scores, f"score outside 0-{MAX_SCORE}")
    return ParsedScores(True, scores)
