"""The synthetic verifier task: valid lists, uniform answers, the property is visible, chance = 1/k."""
from __future__ import annotations

from collections import Counter

import pytest

from aletheia_ray.data.lists import validate_list
from aletheia_ray.data.records import LETTERS
from aletheia_ray.data.synthetic import make_synthetic_lists, random_chance_list_acc, synthetic_user_message
from aletheia_ray.rewards import list_em


def test_lists_are_valid_records_with_one_correct_candidate():
    lists = make_synthetic_lists(200, num_candidates=[2, 3, 4, 5], seed=3)
    for lst in lists:
        validate_list(lst, where="synthetic")
        assert lst.pass_rates.count(1.0) == 1
        assert lst.chosen_answer == LETTERS[lst.chosen_position]


def test_correct_candidate_and_only_it_shows_its_own_label():
    for lst in make_synthetic_lists(100, num_candidates=[2, 3, 5], seed=1):
        own = [LETTERS[k] in code for k, code in enumerate(lst.candidates)]
        assert own == [k == lst.chosen_position for k in range(len(lst.candidates))]
        # no wrong candidate mentions any label letter at all (the property is unambiguous)
        for k, code in enumerate(lst.candidates):
            if k != lst.chosen_position:
                assert not any(letter in code for letter in LETTERS)


def test_answer_positions_are_uniform_so_position_bias_scores_chance():
    lists = make_synthetic_lists(3000, num_candidates=[3], seed=0)
    counts = Counter(lst.chosen_answer for lst in lists)
    assert set(counts) == {"A", "B", "C"}
    assert all(abs(c / 3000 - 1 / 3) < 0.03 for c in counts.values())
    always_a = sum(list_em("\\boxed{A}", lst, style="instruct").reward for lst in lists) / len(lists)
    assert abs(always_a - 1 / 3) < 0.03


def test_deterministic_per_seed_and_seeds_differ():
    a = make_synthetic_lists(20, seed=5)
    assert [x.to_row() for x in a] == [x.to_row() for x in make_synthetic_lists(20, seed=5)]
    assert [x.candidates for x in a] != [x.candidates for x in make_synthetic_lists(20, seed=6)]


def test_prompt_is_short_and_lists_every_candidate():
    lst = make_synthetic_lists(1, num_candidates=[3], seed=0)[0]
    text = synthetic_user_message(lst)
    assert len(text) < 160
    for k, code in enumerate(lst.candidates):
        assert f"{LETTERS[k]}: {code}" in text


def test_random_baseline_is_mean_of_one_over_k():
    lists = make_synthetic_lists(10, num_candidates=[2], seed=0) + make_synthetic_lists(10, num_candidates=[5], seed=0)
    assert random_chance_list_acc(lists) == pytest.approx((0.5 + 0.2) / 2)


@pytest.mark.parametrize("kwargs, match", [({"num_candidates": [6]}, "2-5"), ({"num_candidates": []}, "2-5")])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_synthetic_lists(3, **kwargs)
    with pytest.raises(ValueError, match="num_lists"):
        make_synthetic_lists(0)
