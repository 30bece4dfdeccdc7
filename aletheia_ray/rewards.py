"""Verdict parsing and verifiable rewards for code verifiers (paper Appendix B).

One parser decides "parseable" for both the format reward and the parse-rate metric.

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

Rewards = format term + content term (``RewardResult.format_reward`` / ``content_reward``).
The format term is the penalty exactly when the parser (with the given ``strict``) says
unparseable, so ``parsed_ok``, the parse rate and the penalty never disagree.
  * ListEM / PairEM (the paper's 3-level reward): +1 / 0 when parseable, -1 otherwise.
  * ListSc / PairSc (as the authors' code): the content term is computed from the scores
    whenever they can be *read*: by this parser (also when only the 0-10 range is violated),
    or, under ``strict``, by the lenient parser (e.g. text after the box). Only when no
    scores of the right length can be read does the content term take its minimum
    (ListSc -1, PairSc -2), giving the minimum total (ListSc -2, PairSc -3).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from aletheia_ray.data.records import LETTERS, VerifierList

STYLES = ("think", "instruct")
MAX_SCORE = 10

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


@dataclass(frozen=True)
class RewardResult:
    reward: float
    parsed_ok: bool
    letter: Optional[str] = None  # the verdict, as a letter of the prompt shown to the model
    scores: Optional[list[int]] = None
    reason: str = ""
    format_reward: float = 0.0
    content_reward: float = 0.0


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


def overlong_penalty(length: int, max_len: int, cache: int) -> float:
    """DAPO soft overlong punishment: 0 up to max_len - cache, linear to -1 at max_len, -1 beyond."""
    if not 0 < cache <= max_len:
        raise ValueError(f"overlong cache must be in (0, max_len={max_len}], got {cache}")
    if length <= max_len - cache:
        return 0.0
    if length <= max_len:
        return (max_len - cache - length) / cache
    return -1.0


def _check_pair(lst: VerifierList, pair: Optional[Sequence[int]], needs_pair: bool) -> Optional[tuple[int, int]]:
    if not needs_pair:
        if pair is not None:
            raise ValueError(f"list {lst.idx}: a listwise reward got pair={pair}")
        return None
    if pair is None or len(pair) != 2:
        raise ValueError(f"list {lst.idx}: a pairwise reward needs pair=(i, j), got {pair}")
    i, j = int(pair[0]), int(pair[1])
    n = len(lst.candidates)
    if i == j or not (0 <= i < n and 0 <= j < n):
        raise ValueError(f"list {lst.idx}: invalid pair {pair} for {n} candidates")
    return i, j


def list_em(completion: str, lst: VerifierList, *, style: str, pair=None, strict: bool = False) -> RewardResult:
    """ListEM, the paper's main reward: +1 correct letter, 0 wrong letter, -1 format violation."""
    _check_pair(lst, pair, needs_pair=False)
    parsed = parse_verdict(completion, len(lst.candidates), style, strict=strict)
    if not parsed.ok:
        return RewardResult(-1.0, False, reason=parsed.reason, format_reward=-1.0)
    hit = float(parsed.letter == lst.chosen_answer)
    return RewardResult(hit, True, letter=parsed.letter, content_reward=hit)


def equal_pass_rate_pairs(lst: VerifierList) -> list[tuple[int, int]]:
    """Candidate pairs (i < j) of a list with equal pass rates: PairEM has no right answer there."""
    n = len(lst.candidates)
    return [(i, j) for i in range(n) for j in range(i + 1, n) if lst.pass_rates[i] == lst.pass_rates[j]]


def validate_pair_em_lists(lists: Sequence[VerifierList], *, max_named: int = 5) -> None:
    """Check lists before PairEM training/scoring: a ValueError naming the lists (idx, pair, pass
    rate; first ``max_named`` + the count) that hold a pair with equal pass rates. The testbed
    guarantees distinct pass rates, so such a list is bad data, never a silent reward."""
    bad = [(lst.idx, p, lst.pass_rates[p[0]]) for lst in lists for p in equal_pass_rate_pairs(lst)]
    if bad:
        named = "; ".join(f"list {idx} pair {p} (both {rate})" for idx, p, rate in bad[:max_named])
        more = f"; ... {len(bad)} pairs in all" if len(bad) > max_named else ""
        raise ValueError(f"PairEM needs distinct pass rates within each pair: {named}{more}")


def pair_em(completion: str, lst: VerifierList, *, style: str, pair=None, strict: bool = False) -> RewardResult:
    """PairEM: candidates i (shown as A) and j (B); +1 for the higher pass rate, 0 lower, -1 format.

    A pair with equal pass rates has no right answer: ValueError naming the list and the pair
    (``validate_pair_em_lists`` finds every such pair up front).
    """
    i, j = _check_pair(lst, pair, needs_pair=True)
    if lst.pass_rates[i] == lst.pass_rates[j]:
        raise ValueError(f"list {lst.idx}: pair {(i, j)} has equal pass rates ({lst.pass_rates[i]}); "
                         f"PairEM has no right answer (see validate_pair_em_lists)")
    parsed = parse_verdict(completion, 2, style, strict=strict)
    if not parsed.ok:
        return RewardResult(-1.0, False, reason=parsed.reason, format_reward=-1.0)
    picked = i if parsed.letter == "A" else j
    hit = float(lst.pass_rates[picked] > lst.pass_rates[j if picked == i else i])
    return RewardResult(hit, True, letter=parsed.letter, content_reward=hit)


def _readable_scores(parsed: ParsedScores, completion: str, n: int, style: str, strict: bool) -> Optional[list[int]]:
    """The scores the content term reads: the parser's own (kept also when only out of range),
    else, under ``strict``, what the lenient parser recovers; None when nothing is readable."""
    if parsed.scores is not None:
        return parsed.scores
    return parse_scores(completion, n, style, strict=False).scores if strict else None


def list_sc(completion: str, lst: VerifierList, *, style: str, pair=None, strict: bool = False) -> RewardResult:
    """ListSc = format + content (the authors' GRM reward).

    format: 0 well-formed, -1 otherwise. content, from the readable scores (module docstring):
    +2 unique top score 10 on the correct candidate, +1 unique top below 10 on it, -1 otherwise
    (wrong or tied top). No readable scores: content -1, total -2. E.g. strict, correct
    ``\\boxed{[3, 10, 5]} because...``: -1 + 2 = +1.
    """
    _check_pair(lst, pair, needs_pair=False)
    n = len(lst.candidates)
    parsed = parse_scores(completion, n, style, strict=strict)
    fmt = 0.0 if parsed.ok else -1.0
    scores = _readable_scores(parsed, completion, n, style, strict)
    if scores is None:
        return RewardResult(-2.0, False, reason=parsed.reason, format_reward=-1.0, content_reward=-1.0)
    top = max(scores)
    unique_top = scores.count(top) == 1
    content = -1.0
    if unique_top and scores.index(top) == lst.chosen_position:
        content = 2.0 if top == MAX_SCORE else 1.0
    letter = LETTERS[scores.index(top)] if unique_top else None
    return RewardResult(fmt + content, parsed.ok, letter=letter, scores=scores, reason=parsed.reason,
                        format_reward=fmt, content_reward=content)


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def pair_sc(completion: str, lst: VerifierList, *, style: str, pair=None, strict: bool = False) -> RewardResult:
    """PairSc (JudgeLRM-style, as the authors' code) = format + content for scores [a, b] of (i, j).

    format: +1 well-formed, -0.5 two integer scores but one outside 0-10 (and otherwise
    well-formed), -1 otherwise. content, from the readable scores (module docstring), vs.
    targets round(10 * pass rate): relative +2 if sign(a-b) matches the target's, else -1.5;
    absolute +1 if both scores equal the targets, +0.6 if relative is right and the L1 error is
    <= 2; confidence +0.2 if relative is right and |a-b| >= target gap. No two readable scores:
    content -2, total -3. E.g. strict, targets (10, 4), ``\\boxed{[10, 4]}.``: -1 + 3.2 = 2.2.
    """
    i, j = _check_pair(lst, pair, needs_pair=True)
    parsed = parse_scores(completion, 2, style, strict=strict)
    scores = _readable_scores(parsed, completion, 2, style, strict)
    if scores is None:
        return RewardResult(-3.0, False, reason=parsed.reason, format_reward=-1.0, content_reward=-2.0)
    fmt = 1.0 if parsed.ok else (-0.5 if parsed.scores is not None else -1.0)
    a, b = scores
    ta, tb = round(lst.pass_rates[i] * MAX_SCORE), round(lst.pass_rates[j] * MAX_SCORE)
    rel_ok = _sign(a - b) == _sign(ta - tb)
    err = abs(a - ta) + abs(b - tb)
    content = (2.0 if rel_ok else -1.5)
    content += 1.0 if err == 0 else (0.6 if rel_ok and err <= 2 else 0.0)
    content += 0.2 if rel_ok and abs(a - b) >= abs(ta - tb) else 0.0
    content = round(content, 2)
    letter = None if a == b else ("A" if a > b else "B")
    return RewardResult(round(fmt + content, 2), parsed.ok, letter=letter, scores=scores,
                        reason=parsed.reason, format_reward=fmt, content_reward=content)


RewardFn = Callable[..., RewardResult]
REWARD_FNS: dict[str, RewardFn] = {"list_em": list_em, "pair_em": pair_em, "list_sc": list_sc, "pair_sc": pair_sc}
PAIRWISE_REWARDS = frozenset({"pair_em", "pair_sc"})
# the format term of a parseable completion (anything else is the format penalty)
FORMAT_OK_REWARD: dict[str, float] = {"list_em": 0.0, "pair_em": 0.0, "list_sc": 0.0, "pair_sc": 1.0}


def get_reward_fn(name: str) -> RewardFn:
    """Look a reward up by its config name; unknown names list the known ones."""
    try:
        return REWARD_FNS[name]
    except KeyError:
        raise KeyError(f"unknown reward {name!r}; known: {sorted(REWARD_FNS)}") from None
