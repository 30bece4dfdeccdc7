"""ListAcc, parse rate, SC@K tie breaks, Kendall tau-b tournaments and random baselines."""
import math

import pytest

from aletheia_ray.metrics import (binomial_std_list_acc, kendall_tau_b, kendall_tau_b_over_samples, list_accuracy, majority_vote, mean_kendall_tau,
                                  parse_rate, random_baseline_list_acc, sc_at_k, sc_k_values, tournament_win_counts)


def test_list_accuracy_counts_unparseable_as_wrong():
    assert list_accuracy(["A", None, "C", "B"], ["A", "B", "C", "A"]) == 0.5
    assert parse_rate(["A", None, "C", None]) == 0.5
    with pytest.raises(ValueError, match="3 verdicts for 2 answers"):
        list_accuracy(["A", "B", "C"], ["A", "B"])
    with pytest.raises(ValueError, match="empty"):
        parse_rate([])


def test_majority_vote_ties_go_to_the_earliest_sample():
    assert majority_vote(["B", "A", "A"]) == "A"
    assert majority_vote(["B", "A"]) == "B"              # 1-1 tie: first sample wins
    assert majority_vote([None, "C", "A", "A", "C"]) == "C"  # 2-2 tie: C appears first
    assert majority_vote([None, None, "D"]) == "D"        # unparseable samples do not vote
    assert majority_vote([None, None]) is None


def test_sc_at_k_known_values():
    samples = [["A", "B", "B", None], [None, "C", "A", "A"], ["B", "A", None, None]]
    answers = ["B", "A", "B"]
    assert sc_at_k(samples, answers, 1) == pytest.approx(1 / 3)  # only list 3
    assert sc_at_k(samples, answers, 2) == pytest.approx(1 / 3)  # ties -> first: A, C, B
    assert sc_at_k(samples, answers, 4) == pytest.approx(1.0)    # B, A, tie B/A -> B
    with pytest.raises(ValueError, match="fewer than k=5"):
        sc_at_k(samples, answers, 5)
    assert sc_k_values(16) == [1, 2, 4, 8, 16]
    assert sc_k_values(5) == [1, 2, 4, 5]
    assert sc_k_values(1) == [1]


def test_tournament_and_tau_perfect_reversed_and_partial():
    pass_rates = [0.2, 1.0, 0.5, 0.0]
    pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
    best = [(i, j, i if pass_rates[i] > pass_rates[j] else j) for i, j in pairs]
    worst = [(i, j, j if pass_rates[i] > pass_rates[j] else i) for i, j in pairs]
    assert tournament_win_counts(4, best) == [1, 3, 2, 0]
    assert kendall_tau_b(tournament_win_counts(4, best), pass_rates) == pytest.approx(1.0)
    assert kendall_tau_b(tournament_win_counts(4, worst), pass_rates) == pytest.approx(-1.0)
    # one unparseable game (no win) -> win counts [1, 2, 2, 0]: tau-b with one tie in x
    partial = [(i, j, None if (i, j) == (1, 2) else w) for i, j, w in best]
    wins = tournament_win_counts(4, partial)
    assert wins == [1, 2, 2, 0]
    # 6 candidate pairs: 5 concordant, 0 discordant, 1 tied in wins (1 vs 2) -> tau_b = 5 / sqrt(5 * 6)
    assert kendall_tau_b(wins, pass_rates) == pytest.approx(5 / math.sqrt(30))
    with pytest.raises(ValueError, match="winner 3 is not in pair"):
        tournament_win_counts(4, [(0, 1, 3)])


def test_undefined_tau_minus_one_or_skip():
    assert math.isnan(kendall_tau_b([1, 1, 1], [0.0, 1.0, 0.5]))  # every game won once (a cycle)
    assert math.isnan(kendall_tau_b([0, 0, 0], [0.0, 1.0, 0.5]))  # nothing parsed
    taus = [1.0, float("nan"), 0.5]
    assert mean_kendall_tau(taus, "minus_one") == (pytest.approx(0.5 / 3), 1)
    assert mean_kendall_tau(taus, "skip") == (pytest.approx(0.75), 1)
    assert mean_kendall_tau([float("nan")], "skip") == (None, 1)
    with pytest.raises(ValueError, match="undefined must be one of"):
        mean_kendall_tau(taus, "zero")


def test_tau_uses_every_sample_of_every_pair():
    pass_rates = [1.0, 0.5, 0.0]
    # rounds: 0 = perfect (tau 1), 1 = reversed (tau -1), 2 = nothing parsed (undefined);
    # pair (0, 1) has a 4th sample, unused: rounds = the fewest samples of any pair (3)
    games = [(0, 1, [0, 1, None, 1]), (0, 2, [0, 2, None]), (1, 2, [1, 2, None])]
    tau, rounds, undefined = kendall_tau_b_over_samples(3, games, pass_rates, "minus_one")
    assert (tau, rounds, undefined) == (pytest.approx((1 - 1 - 1) / 3), 3, 1)
    assert kendall_tau_b_over_samples(3, games, pass_rates, "skip") == (pytest.approx(0.0), 3, 1)
    # one sample per pair: the plain single-tournament tau
    first = [(i, j, w[:1]) for i, j, w in games]
    assert kendall_tau_b_over_samples(3, first, pass_rates)[:2] == (pytest.approx(1.0), 1)
    # round 1 with the (0, 2) game unparsed: wins [0, 1, 1] vs [1, .5, 0]: 0 concordant, 2 discordant,
    # 1 tied in wins -> tau-b = -2 / sqrt(2 * 3)
    mixed = [(0, 1, [0, 1]), (0, 2, [0, None]), (1, 2, [1, 2])]
    expected = (1.0 + kendall_tau_b([0, 1, 1], pass_rates)) / 2
    assert kendall_tau_b([0, 1, 1], pass_rates) == pytest.approx(-2 / math.sqrt(6))
    assert kendall_tau_b_over_samples(3, mixed, pass_rates)[0] == pytest.approx(expected)
    only_undefined = [(0, 1, [None]), (0, 2, [None]), (1, 2, [None])]
    assert math.isnan(kendall_tau_b_over_samples(3, only_undefined, pass_rates, "skip")[0])
    with pytest.raises(ValueError, match="no pairs"):
        kendall_tau_b_over_samples(3, [], pass_rates)


def test_random_baseline_equal_shares_is_32_08_percent():
    assert random_baseline_list_acc([2, 3, 4, 5]) == pytest.approx(77 / 240)
    assert round(100 * random_baseline_list_acc([2, 3, 4, 5] * 250), 2) == 32.08
    assert random_baseline_list_acc([2, 2]) == 0.5
    assert binomial_std_list_acc([2], samples_per_list=4) == pytest.approx(0.25)


def test_logprob_gap_from_micro_batch_sums_equals_the_whole_batch():
    """The learner's per-micro-batch, per-rank gap sums (no old-logprob pass) combine to the metrics
    the controller computes on the whole batch."""
    import torch

    from aletheia_ray.metrics import add_gap_sums, gap_metrics_from_sums, logprob_gap_metrics, logprob_gap_sums

    g = torch.Generator().manual_seed(0)
    trainer, rollout = -torch.rand(6, 5, generator=g), -torch.rand(6, 5, generator=g)
    mask = (torch.rand(6, 5, generator=g) > 0.3).float()
    whole = logprob_gap_metrics(trainer, rollout, mask)
    total = None
    for rows in (slice(0, 2), slice(2, 3), slice(3, 6)):
        total = add_gap_sums(total, logprob_gap_sums(trainer[rows], rollout[rows], mask[rows]))
    parts = gap_metrics_from_sums(total, float(mask.sum()))
    assert parts == pytest.approx(whole) and whole["rollout/logprob_abs_diff_max"] > 0.1
    assert whole["rollout/kl_k1"] == pytest.approx(float(((rollout - trainer) * mask).sum() / mask.sum()))
    assert add_gap_sums(None, None) is None and add_gap_sums(total, None) == total
