"""Per-sample rewards for both task kinds, as pure functions (the reward actors call these).

* verdict tasks (verifier lists): ``REWARD_FNS[fn]`` on the completion (ListEM by default);
  an unparseable completion gets the reward function's format penalty and ``parsed_ok=False``;
* pass-rate tasks (code generation): the completion's last fenced code block runs in the
  sandbox; reward = pass rate; no code block = format penalty (``FORMAT_PENALTY``); a sandbox
  infrastructure failure raises (it is never a reward of 0).

Both add the DAPO soft overlong penalty when configured. ``summarize`` turns a step's sample
rewards into metrics (``reward/mean``, ``reward/list_acc``, ``reward/parse_rate``, ...);
``sandbox_metrics`` adds, for pass-rate tasks, how many samples the sandbox executed and their
statuses (``sandbox/executed``, ``sandbox/status_{OK,WA,RE,TLE,MLE,OLE,CE}``).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from typing import Any, Optional, Sequence

from aletheia_ray.data.records import VerifierList
from aletheia_ray.rewards import get_reward_fn, overlong_penalty
from aletheia_ray.sandbox.types import Status, Submission, SubmissionResult

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


def summarize(samples: Sequence[SampleReward]) -> dict[str, float]:
    """Step metrics over all samples (unparseable samples count as wrong and are counted)."""
    n = len(samples)
    if n == 0:
        raise ValueError("no samples to summarise")
    rewards = [s.reward for s in samples]
    mean = sum(rewards) / n
    return {
        "reward/mean": mean,
        "reward/std": (sum((r - mean) ** 2 for r in rewards) / n) ** 0.5,
        "reward/max": max(rewards),
        "reward/min": min(rewards),
        "reward/task_mean": sum(s.task_reward for s in samples) / n,
        "reward/list_acc": sum(s.correct for s in samples) / n,
        "reward/parse_rate": sum(s.parsed_ok for s in samples) / n,
        "reward/num_unparseable": float(sum(not s.parsed_ok for s in samples)),
        "reward/overlong_penalty_mean": sum(s.overlong_penalty for s in samples) / n,
    }


def sandbox_metrics(samples: Sequence[SampleReward]) -> dict[str, float]:
    """Pass-rate samples: executed (= parsed) count, all-tests-passed count, count per sandbox status."""
    executed = [s for s in samples if s.parsed_ok]
    out = {"sandbox/executed": float(len(executed)), "sandbox/passed_all": float(sum(s.correct for s in executed))}
    for status in Status:
        if status != Status.INFRA:  # an infrastructure failure raises in score_pass_rate
            out[f"sandbox/status_{status.value}"] = float(sum(s.reason == status.value for s in executed))
    return out
