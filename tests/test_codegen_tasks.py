"""data.kind codegen without Ray: loading problems, prompts, code extraction, counted format penalties, config checks."""
from __future__ import annotations

import json
import random

import pytest
from fixture_paths import REPO_ROOT, SHARED_DATA
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from aletheia_ray.tasks.codegen import (codegen_completion, codegen_prompt_ids, codegen_user_prompt, cold_start_code,
                                        load_codegen_tasks, stub_code)
from aletheia_ray.config import ConfigError, load_config
from aletheia_ray.metrics import reward_metrics as summarize
from aletheia_ray.metrics import sandbox_metrics
from aletheia_ray.rewards import FORMAT_PENALTY, extract_code, score_pass_rate, submission_for
from aletheia_ray.sandbox.types import Status, Submission, SubmissionResult
from aletheia_ray.sandbox.types import TestResult as TResult
from aletheia_ray.train_config import TrainConfig

HUMANEVAL_PLUS = SHARED_DATA / "humanevalplus_dev.jsonl.gz"
CODECONTESTS = SHARED_DATA / "codecontests_dev.jsonl"
CONFIG = REPO_ROOT / "configs" / "debug_cpu_codegen.yaml"
CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


@pytest.fixture(scope="module")
def humaneval():
    return load_codegen_tasks(str(HUMANEVAL_PLUS), max_call_inputs=10)


@pytest.fixture(scope="module")
def tokenizer(humaneval) -> PreTrainedTokenizerFast:
    """A real byte-level BPE tokenizer with a ChatML template, trained offline in well under a second."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([t.query for t in humaneval[0][:20]], trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|im_end|>")
    fast.chat_template = CHATML
    return fast


def test_humaneval_plus_rows_become_call_test_templates(humaneval):
    tasks, report = humaneval
    assert len(tasks) == report["data/num_problems_read"] == 82
    for t in tasks:
        assert t.entry_point and t.template.entry_point == t.entry_point and t.template.id == t.idx
        assert t.template.language == "python" and t.template.code == ""
        assert 1 <= len(t.template.inputs) <= 10 and t.template.reference  # expected values from the canonical
        assert t.solution.startswith(t.query[:20]) and f"def {t.entry_point}" in t.solution


def test_codecontests_rows_become_stdio_templates():
    tasks, report = load_codegen_tasks(str(CODECONTESTS))
    assert len(tasks) == report["data/num_problems_read"] == 76
    for t in tasks:
        assert t.entry_point is None and t.template.tests and t.template.code == "" and t.solution


def test_bad_rows_are_counted_and_unjudgeable_files_rejected(tmp_path):
    rows = [{"id": "ok", "description": "print the sum", "tests": [{"input": "1 2", "output": "3"}]},
            {"id": "empty", "description": "no tests here"}]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks, report = load_codegen_tasks(str(path))
    assert [t.idx for t in tasks] == ["ok"] and report["data/skipped_problem_without_tests"] == 1
    assert report["data/num_problems_read"] == 2
    with pytest.raises(ValueError, match="humaneval_x_cpp_dev.jsonl.*not_python"):
        load_codegen_tasks(str(SHARED_DATA / "humaneval_x_cpp_dev.jsonl"))


def test_prompts_ask_for_a_python_block_through_the_chat_template(humaneval, tokenizer):
    task = humaneval[0][0]
    text = codegen_user_prompt(task, style="instruct")
    assert task.query.strip() in text and f"`{task.entry_point}`" in text and "```python code block" in text
    assert "</think>" in codegen_user_prompt(task, style="think")
    stdio = load_codegen_tasks(str(CODECONTESTS))[0][0]
    assert "standard input" in codegen_user_prompt(stdio) and stdio.query.strip() in codegen_user_prompt(stdio)
    rendered = tokenizer.decode(codegen_prompt_ids(task, tokenizer, style="instruct"))
    assert rendered.startswith("<|im_start|>user\n") and rendered.endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert task.query.strip() in rendered
    with pytest.raises(ValueError, match="prompt style"):
        codegen_user_prompt(task, style="chatty")


@pytest.mark.parametrize("style", ["instruct", "think"])
def test_code_extraction_round_trips_the_formatted_answer(humaneval, style):
    for task in humaneval[0][:5]:
        for code in (stub_code(task), cold_start_code(task, "correct")):
            completion = codegen_completion(code, style, reasoning="Loop over the pairs.")
            assert extract_code(completion).rstrip() == code.rstrip()
            sub = submission_for(completion, task.template, "p0-s0")
            assert sub.code.rstrip() == code.rstrip() and sub.id == "p0-s0" and sub.inputs == task.template.inputs


def test_last_block_wins_and_no_block_is_unparseable():
    assert extract_code("```python\nx = 1\n```\nbetter:\n```py\nx = 2\n```") == "x = 2\n"
    template = Submission("t", "python", "", entry_point="f", inputs=[[1]], expected=[1])
    for text in ("def f(x): return x", "```python\ndef f(x): return x", ""):  # no block / never closed / empty
        assert extract_code(text) is None and submission_for(text, template, "s") is None


def test_unparseable_gets_the_format_penalty_and_is_counted():
    ok = SubmissionResult("a", Status.OK, 1.0, tests=[TResult(Status.OK)])
    wa = SubmissionResult("b", Status.WA, 0.5, tests=[TResult(Status.OK), TResult(Status.WA)])
    ce = SubmissionResult("c", Status.CE, 0.0, detail="SyntaxError")
    samples = [score_pass_rate(r) for r in (ok, wa, ce, None)]
    assert [s.reward for s in samples] == [1.0, 0.5, 0.0, FORMAT_PENALTY]
    assert [s.parsed_ok for s in samples] == [True, True, True, False]
    metrics = {**summarize(samples), **sandbox_metrics(samples)}
    assert metrics["reward/num_unparseable"] == 1 and metrics["reward/parse_rate"] == 0.75
    assert metrics["reward/mean"] == pytest.approx((1.0 + 0.5 + 0.0 - 1.0) / 4)
    assert metrics["sandbox/executed"] == 3 and metrics["sandbox/passed_all"] == 1
    assert (metrics["sandbox/status_OK"], metrics["sandbox/status_WA"], metrics["sandbox/status_CE"]) == (1, 1, 1)
    infra = SubmissionResult("d", Status.INFRA, None, detail="bwrap failed")
    with pytest.raises(RuntimeError, match="infrastructure failure for submission d"):
        score_pass_rate(infra)  # never a reward of 0


def test_debug_codegen_config_loads_fits_two_cores_and_feeds_the_reward_pool(tokenizer):
    cfg = load_config(CONFIG, schema=TrainConfig)
    assert cfg.data.kind == "codegen" and cfg.reward.fn == "pass_rate" and cfg.cold_start.targets == "stub"
    assert cfg.data.task.scorer(cfg).runs_code
    cpus = (cfg.rollout.num_engines * cfg.rollout.num_cpus_per_engine + cfg.learner.num_ranks * cfg.learner.num_cpus_per_rank
            + cfg.reference.num_cpus + cfg.reward.sandbox.num_actors * cfg.reward.sandbox.num_cpus_per_actor)
    assert cpus <= 2.0 + 1e-9
    data = cfg.data.task.load(cfg, tokenizer)
    assert len(data.items) == len(data.prompt_ids) == len(data.reward_items) == data.report["data/num_lists"] > 0
    assert data.report["data/num_lists_read"] == 82
    for task, item, ids in zip(data.items, data.reward_items, data.prompt_ids):
        assert item is task.template and len(ids) <= cfg.data.max_prompt_tokens
    target = cfg.data.task.cold_start_text(data.items[0], "stub", "instruct", "", random.Random(0))
    assert extract_code(target).rstrip() == stub_code(data.items[0])


def test_reward_fn_must_fit_the_task_naming_key_and_file(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(REPO_ROOT / "configs" / "debug_cpu.yaml", ["reward.fn=pass_rate"], schema=TrainConfig)
    assert "key 'reward.fn' (from override 'reward.fn=pass_rate')" in str(err.value)
    assert "cannot be trained on data.kind 'lists': it trains with ['list_em', 'list_sc'] (data.kind codegen trains it)" in str(err.value)
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"base: {CONFIG}\nreward:\n  fn: list_em\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad, schema=TrainConfig)
    assert f"key 'reward.fn' (in file {bad})" in str(err.value) and "trains with ['pass_rate']" in str(err.value)
    with pytest.raises(ConfigError, match=r"key 'cold_start' \(from override.*'random_letter' does not fit"):
        load_config(CONFIG, ["cold_start.targets=random_letter"], schema=TrainConfig)
    with pytest.raises(ConfigError, match="'stub' does not fit data.kind 'lists'"):
        load_config(REPO_ROOT / "configs" / "debug_cpu.yaml", ["cold_start.targets=stub"], schema=TrainConfig)
