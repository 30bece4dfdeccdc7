"""Verifier prompts: listwise / pairwise, Think / Instruct, verdict or score answers.

    messages = build_messages(lst, style="think", mode="pair", pair=(0, 2))
    text = render_prompt(tokenizer, messages)           # via the tokenizer's chat template

Modes: ``list`` (pick the correct candidate, ``\\boxed{C}``), ``pair`` (candidate i shown as A,
j as B; pick the better one), ``list_score`` / ``pair_score`` (one integer 0-10 per candidate,
``\\boxed{[s_A, s_B, ...]}``). Styles: ``think`` (free reasoning closed by ``</think>``, then
only the boxed answer) and ``instruct`` (a short step-by-step, ending with the boxed answer).
The answer-format sentences and ``format_verdict`` / ``format_scores`` are the single source of
truth shared with the reward parser (``aletheia_ray.rewards``) and SFT cold-start targets.
"""
from __future__ import annotations

import re
from typing import Any, Optional, Sequence

from aletheia_ray.data.records import LETTERS, VerifierList

STYLES = ("think", "instruct")
MODES = ("list", "pair", "list_score", "pair_score")
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
MIN_SCORE, MAX_SCORE = 0, 10

# Fenced-code language tags for the list's ``language`` field (others are used lower-cased).
FENCE_TAGS = {"python": "python", "python3": "python", "py": "python", "cpp": "cpp", "c++": "cpp",
              "cxx": "cpp", "java": "java", "c": "c"}

TASK_LIST = (
    "You are reviewing candidate solutions to a programming problem. Exactly one candidate is fully "
    "correct: it passes every hidden test. The others fail at least one test. Judge functional "
    "correctness only; style, comments and speed do not matter unless they make the program fail."
)
TASK_PAIR = (
    "You are reviewing two candidate solutions to a programming problem. Decide which of the two passes "
    "more of the hidden tests. Judge functional correctness only; style, comments and speed do not matter "
    "unless they make the program fail."
)
TASK_LIST_SCORE = (
    "You are reviewing candidate solutions to a programming problem. Exactly one candidate is fully "
    "correct: it passes every hidden test. Rate how likely each candidate is to pass the tests, judging "
    "functional correctness only."
)
TASK_PAIR_SCORE = (
    "You are reviewing two candidate solutions to a programming problem. Rate how likely each candidate "
    "is to pass the hidden tests, judging functional correctness only."
)

# Answer-format instructions. {options} -> "A, B or C"; {template} -> "\boxed{[score_A, score_B]}".
# No concrete example answer is shown: an example letter would invite position bias.
SCORE_SCALE = (
    f"Each score is an integer from {MIN_SCORE} to {MAX_SCORE}: {MAX_SCORE} means it passes every test, "
    f"{MAX_SCORE // 2} means it passes some tests but not all, {MIN_SCORE} means it fails every test."
)
ANSWER_FORMAT = {
    ("think", "verdict"): (
        "Think it through first: read the problem, trace each candidate on small inputs and edge cases, and "
        f"compare them. Close your reasoning with {THINK_CLOSE}. After {THINK_CLOSE}, write only the final "
        "answer as \\boxed{{X}}, where X is the letter of your choice out of {options}."
    ),
    ("instruct", "verdict"): (
        "Reason step by step, briefly: a few sentences per candidate about whether it is correct. Then end "
        "your reply with the final answer as \\boxed{{X}}, where X is the letter of your choice out of "
        "{options}. Write nothing after the box."
    ),
    ("think", "scores"): (
        "Think it through first: read the problem, trace each candidate on small inputs and edge cases, and "
        f"compare them. Close your reasoning with {THINK_CLOSE}. After {THINK_CLOSE}, write only the final "
        f"answer, one score per candidate in order, as {{template}}. {SCORE_SCALE}"
    ),
    ("instruct", "scores"): (
        "Reason step by step, briefly: a few sentences per candidate about whether it is correct. Then end "
        f"your reply with one score per candidate, in order, as {{template}}. {SCORE_SCALE} "
        "Write nothing after the box."
    ),
}


class PromptError(ValueError):
    """A prompt cannot be built or rendered; the message names the list idx or tokenizer."""


def format_verdict(letter: str) -> str:
    """The exact verdict string the parser accepts, e.g. ``\\boxed{B}``."""
    if len(letter) != 1 or letter not in LETTERS:
        raise PromptError(f"verdict must be one letter of {LETTERS}, got {letter!r}")
    return f"\\boxed{{{letter}}}"


def format_scores(scores: Sequence[int]) -> str:
    """The exact score string the parser accepts, e.g. ``\\boxed{[10, 3]}``."""
    if any(isinstance(s, bool) or not isinstance(s, int) or not MIN_SCORE <= s <= MAX_SCORE for s in scores):
        raise PromptError(f"scores must be integers {MIN_SCORE}-{MAX_SCORE}, got {list(scores)!r}")
    return "\\boxed{[" + ", ".join(str(s) for s in scores) + "]}"


def answer_instructions(style: str, mode: str, num_shown: int) -> str:
    """The answer-format paragraph for ``num_shown`` candidates (2 for pairwise modes)."""
    _check_style_mode(style, mode)
    letters = LETTERS[:num_shown]
    options = ", ".join(letters[:-1]) + f" or {letters[-1]}"
    if mode.endswith("score"):
        template = "\\boxed{[" + ", ".join(f"score_{letter}" for letter in letters) + "]}"
        return ANSWER_FORMAT[(style, "scores")].format(template=template)
    return ANSWER_FORMAT[(style, "verdict")].format(options=options)


def fence_tag(language: str) -> str:
    return FENCE_TAGS.get(language.strip().lower(), language.strip().lower())


def fenced(code: str, language: str) -> str:
    """Code in a fenced block tagged with its language; the fence outgrows backticks in the code."""
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{fence_tag(language)}\n{code.rstrip()}\n{fence}"


def shown_candidates(lst: VerifierList, mode: str, pair: Optional[tuple[int, int]] = None) -> list[int]:
    """Candidate indices in display order: all for list modes, ``[i, j]`` for pairwise ones."""
    n = len(lst.candidates)
    if mode.startswith("pair"):
        if pair is None:
            raise PromptError(f"list idx={lst.idx!r}: mode {mode!r} needs pair=(i, j)")
        i, j = (int(p) for p in pair)
        if i == j or not (0 <= i < n and 0 <= j < n):
            raise PromptError(f"list idx={lst.idx!r}: pair {tuple(pair)} is not two distinct candidates of {n}")
        return [i, j]
    if pair is not None:
        raise PromptError(f"list idx={lst.idx!r}: pair= is only for pairwise modes, not {mode!r}")
    return list(range(n))


def build_user_prompt(lst: VerifierList, *, style: str = "think", mode: str = "list",
                      pair: Optional[tuple[int, int]] = None) -> str:
    """The user turn: task, problem, candidates (fenced, labelled A..), answer format."""
    _check_style_mode(style, mode)
    shown = shown_candidates(lst, mode, pair)
    if not lst.query.strip():
        raise PromptError(f"list idx={lst.idx!r}: empty query")
    task = {"list": TASK_LIST, "pair": TASK_PAIR, "list_score": TASK_LIST_SCORE, "pair_score": TASK_PAIR_SCORE}[mode]
    parts = [task, "## Problem\n\n" + lst.query.strip()]
    for letter, k in zip(LETTERS, shown):
        parts.append(f"## Candidate {letter}\n\n" + fenced(lst.candidates[k], lst.language or "python"))
    parts.append("## Your answer\n\n" + answer_instructions(style, mode, len(shown)))
    return "\n\n".join(parts) + "\n"


def build_messages(lst: VerifierList, *, style: str = "think", mode: str = "list",
                   pair: Optional[tuple[int, int]] = None, system: Optional[str] = None) -> list[dict]:
    """Chat messages for one verification prompt (a single user turn, optional system turn)."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": build_user_prompt(lst, style=style, mode=mode, pair=pair)})
    return messages


def pair_messages(lst: VerifierList, *, style: str = "think", mode: str = "pair",
                  both_orders: bool = False) -> list[tuple[tuple[int, int], list[dict]]]:
    """One prompt per candidate pair (i < j; with ``both_orders`` also j, i): the tournament."""
    pairs = [(i, j) for i in range(len(lst.candidates)) for j in range(len(lst.candidates))
             if i < j or (both_orders and i > j)]
    return [((i, j), build_messages(lst, style=style, mode=mode, pair=(i, j))) for i, j in pairs]


def render_prompt(tokenizer: Any, messages: list[dict], *, prefill: str = "", **template_kwargs: Any) -> str:
    """Apply the tokenizer's chat template with a generation prompt, then append ``prefill``.

    ``prefill`` (e.g. ``THINK_OPEN + "\\n"`` for models whose template does not open the
    think block) is not repeated when the template already ends with it. ``template_kwargs``
    go to ``apply_chat_template`` (e.g. ``enable_thinking=True`` for Qwen3 templates).
    """
    name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
    if not getattr(tokenizer, "chat_template", None):
        raise PromptError(f"tokenizer {name!r} has no chat_template; set tokenizer.chat_template (Jinja)")
    try:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, **template_kwargs)
    except Exception as e:  # jinja2 TemplateError, ValueError for unsupported roles, ...
        raise PromptError(f"chat template of tokenizer {name!r} failed: {type(e).__name__}: {e}") from None
    if not isinstance(text, str):
        raise PromptError(f"chat template of tokenizer {name!r} returned {type(text).__name__}, not text")
    if prefill and not text.endswith(prefill):
        text += prefill
    return text


def prompt_token_ids(tokenizer: Any, messages: list[dict], *, prefill: str = "", **template_kwargs: Any) -> list[int]:
    """Token ids of the rendered prompt (no extra special tokens: the template places them)."""
    text = render_prompt(tokenizer, messages, prefill=prefill, **template_kwargs)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _check_style_mode(style: str, mode: str) -> None:
    if style not in STYLES:
        raise PromptError(f"unknown prompt style {style!r}; use one of {STYLES}")
    if mode not in MODES:
        raise PromptError(f"unknown prompt mode {mode!r}; use one of {MODES}")
