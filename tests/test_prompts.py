"""Verifier prompts: content per mode/style, fenced code, pair order, chat-template rendering."""
from __future__ import annotations

from fixture_paths import SHARED_DATA
import re

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from aletheia_ray.data import load_lists, permute_candidates, validate_list
from aletheia_ray.prompts import (
    ANSWER_FORMAT, MODES, STYLES, THINK_CLOSE, THINK_OPEN, PromptError, answer_instructions, build_messages,
    build_user_prompt, fenced, format_scores, format_verdict, pair_messages, prompt_token_ids, render_prompt,
)

FIXTURE = SHARED_DATA / "humaneval_lists_dev.jsonl"

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# R1-distill style: the template itself opens the think block.
CHATML_OPENS_THINK = CHATML.replace("assistant\n{% endif %}", "assistant\n<think>\n{% endif %}")
# Gemma style: no system role.
NO_SYSTEM = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    """A real byte-level BPE tokenizer with a ChatML template, trained offline in well under a second."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    texts = [lst.query + "\n".join(lst.candidates) for lst in load_lists(FIXTURE)[:20]]
    tok.train_from_iterator(texts + [ANSWER_FORMAT[("think", "verdict")]], trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|im_end|>")
    fast.chat_template = CHATML
    return fast


@pytest.fixture(scope="module")
def lists():
    return load_lists(FIXTURE)


def small_list(language="python", candidates=("return 1", "return 2", "return 3"), correct=2):
    rates = [0.5, 0.0, 0.25][: len(candidates)]
    rates[correct] = 1.0
    return validate_list({"idx": "s0", "query": "Return three.", "candidates": list(candidates), "pass_rates": rates,
                          "chosen_position": correct, "chosen_answer": "ABCDE"[correct], "language": language})


def test_list_prompt_shows_every_candidate_fenced_and_labelled_in_order(lists):
    lst = next(x for x in lists if len(x.candidates) == 5)
    text = build_user_prompt(lst, style="think", mode="list")
    headers = re.findall(r"^## Candidate ([A-E])$", text, flags=re.M)
    assert headers == list("ABCDE")
    assert text.count("```python\n") == 5
    positions = [text.index(code.rstrip()) for code in lst.candidates]
    assert positions == sorted(positions)
    assert lst.query.strip() in text
    assert "A, B, C, D or E" in text and THINK_CLOSE in text and "\\boxed{X}" in text


def test_pairwise_shows_i_as_a_and_j_as_b(lists):
    lst = next(x for x in lists if len(x.candidates) >= 4)
    text = build_user_prompt(lst, style="instruct", mode="pair", pair=(3, 1))
    a_block = text.split("## Candidate A")[1].split("## Candidate B")[0]
    b_block = text.split("## Candidate B")[1].split("## Your answer")[0]
    assert lst.candidates[3].rstrip() in a_block and lst.candidates[1].rstrip() in b_block
    assert "## Candidate C" not in text
    assert "out of A or B." in text


def test_pair_messages_cover_all_pairs(lists):
    lst = next(x for x in lists if len(x.candidates) == 3)
    assert [p for p, _ in pair_messages(lst, style="think")] == [(0, 1), (0, 2), (1, 2)]
    assert len(pair_messages(lst, style="think", both_orders=True)) == 6


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("mode", MODES)
def test_answer_format_per_style_and_mode(style, mode):
    lst = small_list()
    pair = (0, 2) if mode.startswith("pair") else None
    text = build_messages(lst, style=style, mode=mode, pair=pair)[-1]["content"]
    assert text.endswith(answer_instructions(style, mode, 2 if pair else 3) + "\n")
    assert (THINK_CLOSE in text) == (style == "think")
    if mode.endswith("score"):
        template = "[score_A, score_B]" if pair else "[score_A, score_B, score_C]"
        assert f"\\boxed{{{template}}}" in text and "integer from 0 to 10" in text
    else:
        assert "\\boxed{X}" in text and ("out of A or B." if pair else "out of A, B or C.") in text


def test_no_example_letter_in_instructions():
    """An example verdict (e.g. \\boxed{B}) would nudge the model towards a position."""
    for style in STYLES:
        for mode in MODES:
            assert not re.search(r"\\boxed\{[A-E]\}", answer_instructions(style, mode, 5))


def test_languages_tag_fences_and_long_backtick_runs():
    assert "```cpp\nint main" in build_user_prompt(small_list("cpp", ("int main(){}", "int x;", "int y;")))
    assert "```java\nclass A" in build_user_prompt(small_list("java", ("class A {}", "class B {}", "class C {}")))
    assert "```cpp\n" in build_user_prompt(small_list("C++"))
    code = 'doc = """\n```python\nx\n```\n"""'
    block = fenced(code, "python")
    assert block.startswith("````python\n") and block.endswith("\n````")


def test_bad_arguments_name_the_list():
    lst = small_list()
    with pytest.raises(PromptError, match=r"idx='s0'.*needs pair"):
        build_messages(lst, mode="pair")
    with pytest.raises(PromptError, match="not two distinct"):
        build_messages(lst, mode="pair", pair=(1, 1))
    with pytest.raises(PromptError, match="not two distinct"):
        build_messages(lst, mode="pair_score", pair=(0, 3))
    with pytest.raises(PromptError, match="only for pairwise"):
        build_messages(lst, mode="list", pair=(0, 1))
    with pytest.raises(PromptError, match="unknown prompt style"):
        build_messages(lst, style="chatty")
    with pytest.raises(PromptError, match="unknown prompt mode"):
        build_messages(lst, mode="rank")


def test_verdict_and_score_strings():
    assert format_verdict("C") == "\\boxed{C}"
    assert format_scores([10, 0, 7]) == "\\boxed{[10, 0, 7]}"
    for bad in ("F", "AB", "a"):
        with pytest.raises(PromptError):
            format_verdict(bad)
    with pytest.raises(PromptError):
        format_scores([11, 2])


def test_permuted_list_prompt_follows_the_permutation():
    lst = small_list()
    moved = permute_candidates(lst, [2, 0, 1])
    text = build_user_prompt(moved)
    assert text.index("return 3") < text.index("return 1") < text.index("return 2")


def test_render_with_real_chat_template_and_token_ids(tokenizer, lists):
    messages = build_messages(lists[0], style="think", mode="list", system="You are a careful reviewer.")
    text = render_prompt(tokenizer, messages)
    assert text.startswith("<|im_start|>system\nYou are a careful reviewer.<|im_end|>\n<|im_start|>user\n")
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert messages[-1]["content"] in text
    ids = prompt_token_ids(tokenizer, messages)
    assert tokenizer.decode(ids) == text
    assert ids.count(tokenizer.convert_tokens_to_ids("<|im_start|>")) == 3  # special tokens stay whole


def test_think_prefill_added_once(tokenizer):
    messages = build_messages(small_list())
    plain = render_prompt(tokenizer, messages, prefill=THINK_OPEN + "\n")
    assert plain.endswith("<|im_start|>assistant\n<think>\n")
    opener = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer, eos_token="<|im_end|>")
    opener.chat_template = CHATML_OPENS_THINK
    assert render_prompt(opener, messages).endswith("assistant\n<think>\n")
    assert render_prompt(opener, messages, prefill=THINK_OPEN + "\n") == plain


def test_template_errors_are_prompt_errors(tokenizer):
    bare = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer, eos_token="<|im_end|>")
    with pytest.raises(PromptError, match="has no chat_template"):
        render_prompt(bare, build_messages(small_list()))
    bare.chat_template = NO_SYSTEM
    assert render_prompt(bare, build_messages(small_list())).endswith("<start_of_turn>model\n")
    with pytest.raises(PromptError, match="System role not supported"):
        render_prompt(bare, build_messages(small_list(), system="be brief"))


def test_renders_with_the_projects_tiny_tokenizer_when_present():
    models = pytest.importorskip("aletheia_ray.models")
    if not hasattr(models, "build_tiny_tokenizer"):
        pytest.skip("aletheia_ray.models has no build_tiny_tokenizer")
    tok = models.build_tiny_tokenizer()
    messages = build_messages(small_list(), style="think", mode="list_score")
    ids = prompt_token_ids(tok, messages)
    assert tok.decode(ids) == render_prompt(tok, messages)


@pytest.mark.parametrize("style", STYLES)
def test_formatted_answers_parse_with_the_reward_parser(style):
    """What the prompt asks for (and SFT targets use) is exactly what the reward parser accepts."""
    from aletheia_ray.verdicts import parse_scores, parse_verdict

    reasoning = "A fails on empty input; C handles it.\n" + (THINK_CLOSE + "\n" if style == "think" else "")
    verdict = parse_verdict(reasoning + format_verdict("C"), 3, style, strict=True)
    assert (verdict.ok, verdict.letter) == (True, "C")
    scores = parse_scores(reasoning + format_scores([2, 0, 10]), 3, style, strict=True)
    assert (scores.ok, scores.scores) == (True, [2, 0, 10])
