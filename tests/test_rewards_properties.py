"""Property tests (hypothesis): for any completion, parseable <=> no format penalty, for every
reward, style and strictness; and ListSc/PairSc hit their minimum only when nothing is readable."""
import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st

from aletheia_ray.data.records import VerifierList
from aletheia_ray.prompts import STYLES
from aletheia_ray.rewards import FORMAT_OK_REWARD, REWARD_FNS
from aletheia_ray.verdicts import parse_scores, parse_verdict

LST = VerifierList(idx="p0", query="q", candidates=["c0", "c1", "c2"], pass_rates=[0.2, 1.0, 0.5],
                   chosen_position=1, chosen_answer="B")
PAIR = (2, 0)  # A = candidate 2 (0.5), B = candidate 0 (0.2)
MINIMUM = {"list_sc": -2.0, "pair_sc": -3.0}

FRAGMENTS = ["<think>", "</think>", "\\boxed{", "}", "{", "A", "B", "C", "D", "b", "[", "]", ",", ", ", " ", "\n",
             "10", "3", "0", "12", "-1", "\\text{", "so", "."]
SCORE = st.integers(-2, 13).map(str)
BOX_CONTENT = st.one_of(
    st.sampled_from(["A", "B", "C", "E", " B ", "\\text{A}", "AB", ""]),
    st.lists(st.integers(0, 10).map(str), min_size=2, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
    st.lists(SCORE, min_size=1, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
    st.lists(SCORE, min_size=2, max_size=2).map(lambda xs: "[" + ", ".join(xs) + "]"),  # pair scores, some out of range
)
TEXT = st.sampled_from(["", " ", "\n", "so ", ".", " because", "\\boxed{A}", "</think>", "<think>"])


@st.composite
def completions(draw):
    """Mostly near-miss verdicts (prefix, optional </think>, one or two boxes, trailing text), plus
    random fragment soup and arbitrary text."""
    kind = draw(st.integers(0, 2))
    if kind == 0:
        parts = [draw(st.sampled_from(["", "<think>", "<think>x"])), draw(st.sampled_from(["reason", ""])),
                 draw(st.sampled_from(["</think>", "</think>\n", ""])), draw(TEXT),
                 "\\boxed{" + draw(BOX_CONTENT) + "}"]
        if draw(st.booleans()):
            parts.append(draw(TEXT) + "\\boxed{" + draw(BOX_CONTENT) + "}")
        parts.append(draw(TEXT))
        return "".join(parts)
    if kind == 1:
        return "".join(draw(st.lists(st.sampled_from(FRAGMENTS), max_size=14)))
    return draw(st.text(max_size=40))


def _parse(fn, text, style, strict):
    n = 2 if fn.startswith("pair") else len(LST.candidates)
    parser = parse_scores if fn.endswith("_sc") else parse_verdict
    return parser(text, n, style, strict=strict), n


@pytest.mark.parametrize("fn", sorted(REWARD_FNS))
@settings(max_examples=300, deadline=None)
@given(text=completions(), style=st.sampled_from(STYLES), strict=st.booleans())
def test_parseable_iff_no_format_penalty(fn, text, style, strict):
    parsed, n = _parse(fn, text, style, strict)
    result = REWARD_FNS[fn](text, LST, style=style, pair=PAIR if fn.startswith("pair") else None, strict=strict)
    assert result.parsed_ok == parsed.ok
    assert (result.format_reward == FORMAT_OK_REWARD[fn]) == parsed.ok
    assert result.format_reward <= FORMAT_OK_REWARD[fn]
    assert result.reward == pytest.approx(result.format_reward + result.content_reward)
    if fn in MINIMUM:  # the content term is read whenever the lenient parser finds scores
        readable = parse_scores(text, n, style, strict=False).scores
        if not strict:
            readable = parsed.scores
        assert (result.scores is None) == (readable is None and parsed.scores is None)
        if result.scores is None:
            assert result.reward == MINIMUM[fn]
        else:
            assert result.scores == (parsed.scores if parsed.scores is not None else readable)


@pytest.mark.parametrize("name,predicate", [
    ("letter parses", lambda t: parse_verdict(t, 3, "think").ok),
    ("letter fails", lambda t: not parse_verdict(t, 3, "think").ok),
    ("scores parse", lambda t: parse_scores(t, 3, "think").ok),
    ("pair scores out of range", lambda t: parse_scores(t, 2, "think").scores is not None
     and not parse_scores(t, 2, "think").ok),
    ("strict fails, lenient reads scores", lambda t: not parse_scores(t, 2, "think", strict=True).ok
     and parse_scores(t, 2, "think").ok),
])
def test_the_strategy_reaches_every_case(name, predicate):
    """Guard against a vacuous property: the generator yields each kind of completion."""
    find(completions(), predicate, settings=settings(max_examples=2000, deadline=None, database=None))
