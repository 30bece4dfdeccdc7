"""Verdict parsing, ListEM/PairEM/ListSc/PairSc and the DAPO overlong penalty on hand-made cases."""
import pytest

from aletheia_ray.data.records import VerifierList
from aletheia_ray.rewards import (REWARD_FNS, equal_pass_rate_pairs, get_reward_fn, list_em, list_sc, overlong_penalty,
                                  pair_em, pair_sc, validate_pair_em_lists)
from aletheia_ray.verdicts import ParsedVerdict, parse_scores, parse_verdict


def make_list(pass_rates, idx="t0"):
    pos = pass_rates.index(1.0)
    return VerifierList(idx=idx, query="q", candidates=[f"c{i}" for i in range(len(pass_rates))],
                        pass_rates=list(pass_rates), chosen_position=pos, chosen_answer="ABCDE"[pos])


THREE = make_list([0.2, 1.0, 0.5])  # correct: B


@pytest.mark.parametrize("text,letter", [
    ("<think>compare A and B</think>\\boxed{B}", "B"),
    ("compare A and B</think>\n\n\\boxed{B}", "B"),  # opening tag came with the prompt
    ("<think>maybe \\boxed{A}? no.</think>The answer is \\boxed{C}.", "C"),  # drafts inside think ignored
    ("<think>x</think>\\boxed{ \\text{A} }", "A"),
    ("<think>x</think>\\boxed{B} ... so \\boxed{B}", "B"),  # repeating the same answer is fine
])
def test_think_verdicts_that_parse(text, letter):
    assert parse_verdict(text, 3, "think") == ParsedVerdict(True, letter, "")


@pytest.mark.parametrize("text,reason", [
    ("<think>I pick \\boxed{B}", "missing </think>"),
    ("<think>a</think>b</think>\\boxed{B}", "2 </think> tags"),
    ("<think>a</think><think>b</think>\\boxed{B}", "2 </think> tags"),
    ("intro <think>a</think>\\boxed{B}", "stray <think> tag"),
    ("<think>a</think>B is best", "no \\boxed{} answer after </think>"),
    ("<think>a</think>\\boxed{B} or \\boxed{C}", "2 different boxed answers"),
    ("<think>a</think>\\boxed{D}", "letter D out of range A-C"),
    ("<think>a</think>\\boxed{b}", "boxed answer 'b' is not a letter A-E"),
    ("<think>a</think>\\boxed{AB}", "boxed answer 'AB' is not a letter A-E"),
    ("<think>a</think>\\boxed{B", "unterminated \\boxed{"),
    ("", "missing </think>"),
])
def test_think_format_violations(text, reason):
    parsed = parse_verdict(text, 3, "think")
    assert (parsed.ok, parsed.letter, parsed.reason) == (False, None, reason)


def test_instruct_style_needs_no_think_and_strict_needs_box_last():
    assert parse_verdict("A is wrong, so \\boxed{B}", 3, "instruct").letter == "B"
    assert parse_verdict("\\boxed{B} because", 3, "instruct").ok
    assert not parse_verdict("\\boxed{B} because", 3, "instruct", strict=True).ok
    assert parse_verdict("because \\boxed{B}\n", 3, "instruct", strict=True).ok


def test_strict_think_is_the_authors_regex():
    assert parse_verdict("<think>x</think>\n\\boxed{B}", 3, strict=True).letter == "B"
    for text in ("<think>x</think>so \\boxed{B}", "<think>x</think>\\boxed{B}.", "<think>x</think>\\boxed{\\text{B}}"):
        assert not parse_verdict(text, 3, strict=True).ok, text


def test_unknown_style_and_bad_candidate_count_raise():
    with pytest.raises(ValueError, match="unknown verdict style 'cot'"):
        parse_verdict("\\boxed{A}", 3, "cot")
    with pytest.raises(ValueError, match="num_candidates must be 2-5"):
        parse_verdict("\\boxed{A}", 6, "instruct")


def test_parse_scores():
    assert parse_scores("<think>x</think>\\boxed{[10, 3,0]}", 3).scores == [10, 3, 0]
    assert parse_scores("<think>x</think>\\boxed{[2, 7]}", 3).reason == "2 scores for 3 candidates"
    out = parse_scores("<think>x</think>\\boxed{[2, 11]}", 2)
    assert (out.ok, out.scores, out.reason) == (False, [2, 11], "score outside 0-10")
    assert parse_scores("<think>x</think>\\boxed{[2.5, 7]}", 2).reason.endswith("is not a list of integers")
    assert parse_scores("<think>x</think>\\boxed{B}", 2).reason.endswith("is not a list of integers")


def test_list_em_rewards_and_parse_rate_agree():
    assert list_em("<think>x</think>\\boxed{B}", THREE, style="think").reward == 1.0
    assert list_em("<think>x</think>\\boxed{A}", THREE, style="think").reward == 0.0
    bad = list_em("<think>x</think>\\boxed{E}", THREE, style="think")
    assert (bad.reward, bad.parsed_ok, bad.reason) == (-1.0, False, "letter E out of range A-C")
    # the format penalty fires exactly when the parser says unparseable
    for text in ("\\boxed{B}", "<think>x</think>\\boxed{B}", "<think></think>\\boxed{A} \\boxed{C}"):
        assert (list_em(text, THREE, style="think").reward == -1.0) == (not parse_verdict(text, 3).ok)


def test_pair_em_maps_a_to_i_and_b_to_j():
    # pair (2, 0): A is candidate 2 (0.5), B is candidate 0 (0.2) -> A is better
    assert pair_em("</think>\\boxed{A}", THREE, style="think", pair=(2, 0)).reward == 1.0
    assert pair_em("</think>\\boxed{B}", THREE, style="think", pair=(2, 0)).reward == 0.0
    assert pair_em("</think>\\boxed{B}", THREE, style="think", pair=(0, 1)).reward == 1.0
    assert pair_em("</think>\\boxed{C}", THREE, style="think", pair=(0, 1)).reward == -1.0  # only A/B exist
    with pytest.raises(ValueError, match="list t0: invalid pair"):
        pair_em("</think>\\boxed{A}", THREE, style="think", pair=(1, 1))
    with pytest.raises(ValueError, match=r"list t0: pair \(0, 2\) has equal pass rates \(0.3\)"):
        pair_em("</think>\\boxed{A}", make_list([0.3, 1.0, 0.3]), style="think", pair=(0, 2))
    with pytest.raises(ValueError, match="needs pair"):
        pair_em("</think>\\boxed{A}", THREE, style="think")


def test_list_sc_values():
    r = lambda s: list_sc(f"<think>x</think>\\boxed{{{s}}}", THREE, style="think").reward
    assert r("[3, 10, 5]") == 2.0  # unique top on the correct one, score 10
    assert r("[3, 9, 5]") == 1.0   # unique top, below 10
    assert r("[9, 9, 5]") == -1.0  # tied top
    assert r("[10, 3, 5]") == -1.0  # wrong
    assert r("[3, 10]") == -2.0     # nothing readable (3 candidates): format -1 + content -1
    out_of_range = list_sc("<think>x</think>\\boxed{[3, 12, 5]}", THREE, style="think")
    # readable but outside 0-10: format -1 + content +1 (unique top 12 on B, not 10)
    assert (out_of_range.reward, out_of_range.format_reward, out_of_range.content_reward) == (0.0, -1.0, 1.0)
    assert not out_of_range.parsed_ok and out_of_range.scores == [3, 12, 5]
    assert list_sc("<think>x</think>\\boxed{[3, 9, 5]}", THREE, style="think").letter == "B"


def test_pair_sc_judgelrm_values():
    lst = make_list([1.0, 0.4])  # targets (10, 4)
    r = lambda s: pair_sc(f"<think>x</think>\\boxed{{{s}}}", lst, style="think", pair=(0, 1))
    assert r("[10, 4]").reward == 4.2  # format 1 + relative 2 + exact 1 + confidence 0.2
    assert r("[9, 5]").reward == 3.6  # 1 + 2 + 0.6 (L1 error 2) + 0 (gap 4 < 6)
    assert r("[10, 2]").reward == 3.8  # 1 + 2 + 0.6 + 0.2 (gap 8 >= 6)
    assert r("[7, 7]").reward == -0.5  # 1 - 1.5: a tie against a strict order is the wrong order
    assert r("[4, 10]").reward == -0.5
    out_of_range = r("[12, 4]")
    assert (out_of_range.reward, out_of_range.format_reward, out_of_range.parsed_ok) == (2.3, -0.5, False)  # -0.5 + 2 + 0.6 + 0.2
    assert r("[10]").reward == -3.0
    # reversed pair: targets (4, 10)
    assert pair_sc("</think>\\boxed{[4, 10]}", lst, style="think", pair=(1, 0)).reward == 4.2


def test_list_sc_strict_format_failure_keeps_the_content_term():
    """The authors' code adds format and content: text after the box under strict costs the
    format term only (-1), the content is still read from the box."""
    text = "<think>x</think>\\boxed{[3, 10, 5]} because B passes"
    assert list_sc(text, THREE, style="think").reward == 2.0  # lenient: well-formed, 0 + 2
    strict = list_sc(text, THREE, style="think", strict=True)
    assert (strict.reward, strict.format_reward, strict.content_reward) == (1.0, -1.0, 2.0)  # -1 + 2
    assert (strict.parsed_ok, strict.letter, strict.scores) == (False, "B", [3, 10, 5])
    assert strict.reason == "text around the boxed answer (strict format)"
    wrong = list_sc("<think>x</think>\\boxed{[10, 3, 5]}.", THREE, style="think", strict=True)
    assert wrong.reward == -2.0 and wrong.scores == [10, 3, 5]  # -1 + -1: readable but wrong
    # nothing readable: the minimum, with or without strict
    for text in ("<think>x</think>no box", "<think>x</think>\\boxed{[3, 10]} then", "\\boxed{[3, 10, 5]}"):
        out = list_sc(text, THREE, style="think", strict=True)
        assert (out.reward, out.format_reward, out.content_reward, out.scores) == (-2.0, -1.0, -1.0, None), text


def test_pair_sc_strict_format_failure_keeps_the_content_term():
    lst = make_list([1.0, 0.4])  # targets (10, 4)
    text = "<think>x</think>\\boxed{[10, 4]} since A passes all tests"
    assert pair_sc(text, lst, style="think", pair=(0, 1)).reward == 4.2  # 1 + 2 + 1 + 0.2
    strict = pair_sc(text, lst, style="think", pair=(0, 1), strict=True)
    assert (strict.reward, strict.format_reward, strict.content_reward) == (2.2, -1.0, 3.2)  # -1 + 3.2
    assert (strict.parsed_ok, strict.letter, strict.scores) == (False, "A", [10, 4])
    # strict + out of range + text after: the regex fails (-1), content 2 + 0.6 + 0.2 from [12, 4]
    both = pair_sc("<think>x</think>\\boxed{[12, 4]} ok", lst, style="think", pair=(0, 1), strict=True)
    assert (both.reward, both.format_reward, both.content_reward) == (1.8, -1.0, 2.8)
    # strict, box alone but out of range: -0.5 as the authors' judgelrm_format_reward
    alone = pair_sc("<think>x</think>\\boxed{[12, 4]}", lst, style="think", pair=(0, 1), strict=True)
    assert (alone.reward, alone.format_reward) == (2.3, -0.5)
    # wrong order under strict: -1 + (-1.5 + 0 + 0)
    assert pair_sc("<think>x</think>\\boxed{[4, 10]}!", lst, style="think", pair=(0, 1), strict=True).reward == -2.5
    for text in ("<think>x</think>\\boxed{[10]} x", "<think>x</think>\\boxed{B}", "no think \\boxed{[10, 4]}"):
        out = pair_sc(text, lst, style="think", pair=(0, 1), strict=True)
        assert (out.reward, out.format_reward, out.content_reward, out.scores) == (-3.0, -1.0, -2.0, None), text


def test_pair_em_equal_pass_rates_are_named_up_front():
    tied = make_list([0.3, 1.0, 0.3, 0.0, 0.0], idx="tied")
    assert equal_pass_rate_pairs(tied) == [(0, 2), (3, 4)] and equal_pass_rate_pairs(THREE) == []
    validate_pair_em_lists([THREE])  # distinct pass rates: fine
    with pytest.raises(ValueError) as err:
        validate_pair_em_lists([THREE, tied])
    assert str(err.value) == ("PairEM needs distinct pass rates within each pair: "
                              "list tied pair (0, 2) (both 0.3); list tied pair (3, 4) (both 0.0)")
    many = [make_list([1.0, 0.0, 0.0], idx=f"m{k}") for k in range(7)]
    with pytest.raises(ValueError, match=r"list m0 pair \(1, 2\).*list m4 pair.*\.\.\. 7 pairs in all$"):
        validate_pair_em_lists(many)


def test_overlong_penalty_ramp():
    assert overlong_penalty(6144, 7168, 1024) == 0.0
    assert overlong_penalty(6656, 7168, 1024) == -0.5
    assert overlong_penalty(7168, 7168, 1024) == -1.0
    assert overlong_penalty(9000, 7168, 1024) == -1.0
    assert overlong_penalty(10, 100, 100) == -0.1
    with pytest.raises(ValueError, match="overlong cache"):
        overlong_penalty(10, 100, 0)


def test_registry_has_one_signature():
    assert set(REWARD_FNS) == {"list_em", "pair_em", "list_sc", "pair_sc"}
    text = "<think>x</think>\\boxed{A}"
    assert get_reward_fn("list_em")(text, THREE, style="think", pair=None).reward == 0.0
    assert get_reward_fn("pair_em")(text, THREE, style="think", pair=(1, 0)).reward == 1.0
    with pytest.raises(KeyError, match="unknown reward 'listem'"):
        get_reward_fn("listem")
    with pytest.raises(ValueError, match="listwise reward got pair"):
        list_em(text, THREE, style="think", pair=(0, 1))
