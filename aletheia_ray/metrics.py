"""Metrics (pure): verifier evaluation (ListAcc, parse rate, SC@K, Kendall tau-b tournaments,
baselines; a verdict is a letter ``"B"`` or ``None`` when unparseable) and the training step's
(``reward/*``, ``sandbox/*``, ``response_length/*``, ``rollout/*``, averaged ``actor/*``).
"""
from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING, Iterable, Optional, Sequence, Union

import numpy as np
from scipy.stats import kendalltau

from aletheia_ray.data.records import VerifierList
from aletheia_ray.rewards import SampleReward
from aletheia_ray.sandbox.types import Status

if TYPE_CHECKING:  # keeps torch out of the reward actors' processes
    from aletheia_ray.batch import Generation

Verdict = Optional[str]
TAU_UNDEFINED_MODES = ("minus_one", "skip")


def safe_mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("cannot average an empty set of values")
    return float(np.mean(values))


def list_accuracy(verdicts: Sequence[Verdict], answers: Sequence[str]) -> float:
    """ListAcc: share of lists whose verdict equals the correct letter (unparseable = wrong)."""
    if len(verdicts) != len(answers):
        raise ValueError(f"{len(verdicts)} verdicts for {len(answers)} answers")
    return safe_mean([float(v is not None and v == a) for v, a in zip(verdicts, answers)])


def parse_rate(verdicts: Sequence[Verdict]) -> float:
    """Share of completions that parsed (a verdict that is not None)."""
    return safe_mean([float(v is not None) for v in verdicts])


def majority_vote(samples: Sequence[Verdict]) -> Verdict:
    """Most frequent letter among parseable samples; unparseable samples do not vote.

    Ties go to the tied letter that appears earliest in the sample order. Samples are drawn
    i.i.d., so their order is exchangeable and this pick is distributed like a uniform random
    choice among the tied letters, yet deterministic; counting ties as wrong would instead
    push SC@2 below SC@1 whenever two samples disagree. ``None`` if no sample parsed.
    """
    counts = Counter(v for v in samples if v is not None)
    if not counts:
        return None
    top = max(counts.values())
    return next(v for v in samples if v is not None and counts[v] == top)


def sc_at_k(samples_per_list: Sequence[Sequence[Verdict]], answers: Sequence[str], k: int) -> float:
    """SC@K: ListAcc of the majority vote over the first ``k`` samples of every list."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    short = [i for i, s in enumerate(samples_per_list) if len(s) < k]
    if short:
        raise ValueError(f"{len(short)} lists have fewer than k={k} samples (first: position {short[0]})")
    return list_accuracy([majority_vote(s[:k]) for s in samples_per_list], answers)


def sc_k_values(max_k: int) -> list[int]:
    """Powers of two up to ``max_k``, plus ``max_k`` itself when it is not one."""
    ks = [2**p for p in range(int(math.log2(max_k)) + 1)] if max_k >= 1 else []
    return ks + ([max_k] if ks and ks[-1] != max_k else [])


def tournament_win_counts(num_candidates: int, outcomes: Iterable[tuple[int, int, Optional[int]]]) -> list[int]:
    """Win counts from pairwise outcomes ``(i, j, winner)``; ``winner is None`` gives no win."""
    wins = [0] * num_candidates
    for i, j, winner in outcomes:
        if winner is None:
            continue
        if winner not in (i, j):
            raise ValueError(f"winner {winner} is not in pair ({i}, {j})")
        wins[winner] += 1
    return wins


def kendall_tau_b(win_counts: Sequence[float], pass_rates: Sequence[float]) -> float:
    """Kendall tau-b between tournament win counts and pass rates; nan when undefined
    (all win counts equal, or all pass rates equal)."""
    if len(win_counts) != len(pass_rates):
        raise ValueError(f"{len(win_counts)} win counts for {len(pass_rates)} pass rates")
    if len(set(win_counts)) < 2 or len(set(pass_rates)) < 2:
        return float("nan")
    return float(kendalltau(win_counts, pass_rates, variant="b").statistic)


def mean_kendall_tau(taus: Sequence[float], undefined: str = "minus_one") -> tuple[Optional[float], int]:
    """Average per-list taus; an undefined (nan) tau counts as -1 (the authors' code) or is
    skipped. Returns (mean or None when nothing is left, number of undefined taus)."""
    if undefined not in TAU_UNDEFINED_MODES:
        raise ValueError(f"undefined must be one of {TAU_UNDEFINED_MODES}, got {undefined!r}")
    n_undefined = sum(1 for t in taus if math.isnan(t))
    if undefined == "minus_one":
        kept = [-1.0 if math.isnan(t) else t for t in taus]
    else:
        kept = [t for t in taus if not math.isnan(t)]
    return (float(np.mean(kept)) if kept else None), n_undefined


def kendall_tau_b_over_samples(num_candidates: int, pair_samples: Sequence[tuple[int, int, Sequence[Optional[int]]]],
                               pass_rates: Sequence[float], undefined: str = "minus_one") -> tuple[float, int, int]:
    """Kendall tau-b of one list from K samples per pair: the mean over K sample rounds.

    ``pair_samples`` holds ``(i, j, winners)`` with one winner (``i``, ``j`` or ``None`` when
    unparseable) per sample. Round ``r`` is the tournament of every pair's ``r``-th sample; its
    tau is ``kendall_tau_b`` (scipy). The list's tau is the mean over rounds, an undefined round
    scoring -1 or being skipped (``undefined``, as ``mean_kendall_tau``), so K = 1 is the usual
    single-generation tau and K > 1 averages K independent tournaments. Rounds = the fewest
    samples any pair has (extra samples of other pairs are not used). Returns (tau, nan when
    every round was skipped; number of rounds; number of undefined rounds).
    """
    if not pair_samples:
        raise ValueError("no pairs to build a tournament from")
    rounds = min(len(w) for _, _, w in pair_samples)
    if rounds == 0:
        raise ValueError("a pair has no samples")
    taus = [kendall_tau_b(tournament_win_counts(num_candidates, [(i, j, w[r]) for i, j, w in pair_samples]),
                          pass_rates) for r in range(rounds)]
    mean, n_undefined = mean_kendall_tau(taus, undefined)
    return (float("nan") if mean is None else mean), rounds, n_undefined


def random_baseline_list_acc(lists: Iterable[Union[VerifierList, int]]) -> float:
    """Expected ListAcc of a uniform random letter: mean of 1/n (lists or candidate counts)."""
    sizes = [x if isinstance(x, int) else len(x.candidates) for x in lists]
    return safe_mean([1.0 / n for n in sizes])


def binomial_std_list_acc(lists: Iterable[Union[VerifierList, int]], samples_per_list: int = 1) -> float:
    """Standard deviation of the random-guess ListAcc averaged over ``samples_per_list``
    independent guesses per list (for "within sampling error" checks)."""
    sizes = [x if isinstance(x, int) else len(x.candidates) for x in lists]
    var = sum((1 / n) * (1 - 1 / n) for n in sizes) / samples_per_list / len(sizes) ** 2
    return math.sqrt(var)


# ---- the training step ---------------------------------------------------------------------------

def reward_metrics(samples: Sequence[SampleReward]) -> dict[str, float]:
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


def response_metrics(gens: Sequence["Generation"]) -> dict[str, float]:
    lengths = [len(g.response_ids) for g in gens]
    return {
        "response_length/mean": sum(lengths) / len(lengths),
        "response_length/max": float(max(lengths)),
        "response_length/min": float(min(lengths)),
        "response_length/clip_ratio": sum(g.finish_reason == "length" for g in gens) / len(gens),
        "prompt_length/mean": sum(len(g.prompt_ids) for g in gens) / len(gens),
    }


def logprob_gap_sums(trainer_lp, rollout_lp, mask) -> dict[str, float]:
    """Sums over the masked tokens of |trainer - rollout| and (rollout - trainer), and the largest
    |difference|: what ``logprob_gap_metrics`` needs, additive over micro-batches and ranks."""
    diff = (trainer_lp - rollout_lp) * mask
    return {"abs_diff_sum": float(diff.abs().sum()), "k1_sum": float(-diff.sum()),
            "abs_diff_max": float(diff.abs().max()) if diff.numel() else 0.0}


def add_gap_sums(total: Optional[dict[str, float]], part: Optional[dict[str, float]]) -> Optional[dict[str, float]]:
    """Two ``logprob_gap_sums`` combined (sums add, the max is the larger); None stands for none."""
    if total is None or part is None:
        return part if total is None else total
    return {"abs_diff_sum": total["abs_diff_sum"] + part["abs_diff_sum"], "k1_sum": total["k1_sum"] + part["k1_sum"],
            "abs_diff_max": max(total["abs_diff_max"], part["abs_diff_max"])}


def gap_metrics_from_sums(sums: dict[str, float], num_tokens: float) -> dict[str, float]:
    return {"rollout/logprob_abs_diff_mean": sums["abs_diff_sum"] / num_tokens,
            "rollout/logprob_abs_diff_max": sums["abs_diff_max"], "rollout/kl_k1": sums["k1_sum"] / num_tokens}


def logprob_gap_metrics(trainer_lp, rollout_lp, mask) -> dict[str, float]:
    """How far the engine's sampling logprobs are from the trainer's (should be ~0 on-policy in fp32)."""
    return gap_metrics_from_sums(logprob_gap_sums(trainer_lp, rollout_lp, mask), float(mask.sum()))


def mean_update_metrics(per_update: Sequence[dict[str, float]]) -> dict[str, float]:
    """Learner metrics of several updates from one generated batch: the mean of each, plus
    ``actor/num_updates``."""
    keys = per_update[0].keys()
    out = {k: sum(m[k] for m in per_update) / len(per_update) for k in keys}
    out["actor/num_updates"] = float(len(per_update))
    return out
