"""Rewards, as pure functions (the reward actors call them): verifier verdicts and code pass rates.

* verdict tasks (verifier lists and pairs): ``REWARD_FNS[fn]`` on the completion (ListEM by
  default), parsed by ``aletheia_ray.verdicts``; an unparseable completion gets the reward
  function's format penalty and ``parsed_ok=False``;
* pass-rate tasks (code generation): the completion's last fenced code block runs in the
  sandbox; reward = pass rate; no code block = format penalty (``FORMAT_PENALTY``); a sandbox
  infrastructure failure raises (it is never a reward of 0).

Both add the DAPO soft overlong penalty when configured. A task hands the reward pool one scorer
(``VerdictScorer`` | ``PassRateScorer``); step metrics are in ``aletheia_ray.metrics``.

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
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Optional, Sequence

from aletheia_ray.data.records import LETTERS, VerifierList
from aletheia_ray.sandbox.types import Status, Submission, SubmissionResult
from aletheia_ray.verdicts import MAX_SCORE, ParsedScores, parse_scores, parse_verdict


@dataclass(frozen=True)
class RewardResult:
    reward: float
    parsed_ok: bool
    letter: Optional[str] = None  # the verdict, as a letter of the prompt shown to the model
    scores: Optional[list[int]] = None
    reason: str = ""
    format_reward: float = 0.0
    content_reward: float = 0.0


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


# ---- per-sample rewards -------------------------------------------------------------------------

FORMAT_PENALTY = -1.0  # code generation without a code block
_FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class Overlong:
    max_len: int  # the response budget (rollout.max_new_tokens)
    cache: int  # ramp length at the end of the budget


@dataclass
class SampleReward:
    reward: float  # task reward + overlong penalty: what the advantages see
    parsed_ok: bool
    correct: bool
    task_reward: float
    overlong_penalty: float = 0.0
    letter: Optional[str] = None
    reason: str = ""  # why unparseable / sandbox status

    def to_meta(self) -> dict[str, Any]:
        return asdict(self)


def _with_overlong(sample: SampleReward, length: int, overlong: Optional[Overlong]) -> SampleReward:
    if overlong is None:
        return sample
    penalty = overlong_penalty(length, overlong.max_len, overlong.cache)
    return replace(sample, reward=sample.task_reward + penalty, overlong_penalty=penalty)


def score_verdict(completion: str, lst: VerifierList, *, fn: str = "list_em", style: str = "think",
                  strict: bool = False, response_length: int = 0, overlong: Optional[Overlong] = None,
                  pair: Optional[Sequence[int]] = None) -> SampleReward:
    result = get_reward_fn(fn)(completion, lst, style=style, pair=pair, strict=strict)
    correct = result.parsed_ok and result.content_reward > 0
    sample = SampleReward(reward=result.reward, parsed_ok=result.parsed_ok, correct=correct,
                          task_reward=result.reward, letter=result.letter, reason=result.reason)
    return _with_overlong(sample, response_length, overlong)


def extract_code(completion: str) -> Optional[str]:
    """The last fenced code block of a completion, or None."""
    blocks = _FENCE.findall(completion)
    return blocks[-1] if blocks else None


def submission_for(completion: str, task: Submission, sample_id: str) -> Optional[Submission]:
    """The task's submission with the generated code, or None when the completion has no code block."""
    code = extract_code(completion)
    return None if code is None else replace(task, id=sample_id, code=code)


def score_pass_rate(result: Optional[SubmissionResult], *, response_length: int = 0,
                    overlong: Optional[Overlong] = None) -> SampleReward:
    """Reward of one code-generation sample from its sandbox result (None: no code block)."""
    if result is None:
        sample = SampleReward(FORMAT_PENALTY, False, False, FORMAT_PENALTY, reason="no fenced code block")
    elif result.status == Status.INFRA or result.pass_rate is None:
        detail = result.tests[0].detail if result.tests else ""
        raise RuntimeError(f"sandbox infrastructure failure for submission {result.id}: {detail or result.status}")
    else:
        rate = float(result.pass_rate)
        sample = SampleReward(rate, True, rate == 1.0, rate, reason=result.status.value)
    return _with_overlong(sample, response_length, overlong)


# ---- scorers: what a task hands the reward pool ---------------------------------------------------

@dataclass(frozen=True)
class VerdictScorer:
    """Verifier tasks: ``score`` one completion against its list (or ``(list, pair)``) in a reward actor."""

    fn: str = "list_em"
    style: str = "think"
    strict: bool = False
    overlong: Optional[Overlong] = None
    runs_code = False  # scored by the reward actors, not the sandbox

    def __post_init__(self):
        get_reward_fn(self.fn)  # fail at start-up on an unknown name

    def score(self, completion: str, item: Any, response_length: int) -> SampleReward:
        lst, pair = item if isinstance(item, tuple) else (item, None)
        return score_verdict(completion, lst, fn=self.fn, style=self.style, strict=self.strict,
                             response_length=response_length, overlong=self.overlong, pair=pair)


@dataclass(frozen=True)
class PassRateScorer:
    """Code generation: a completion becomes a sandbox ``Submission`` (``submission``), its result a
    reward (``score``); the reward pool runs the submissions on the sandbox pool."""

    overlong: Optional[Overlong] = None
    runs_code = True

    def submission(self, completion: str, template: Submission, sample_id: str) -> Optional[Submission]:
        return submission_for(completion, template, sample_id)

    def score(self, result: Optional[SubmissionResult], response_length: int) -> SampleReward:
        return score_pass_rate(result, response_length=response_length, overlong=self.overlong)
