"""Candidate-generation prompts and code extraction (``aletheia-testbed pipeline``, stage generate).

    code_prompt = problem_code_prompt(row, "python")   # HumanEval prompt (signature + docstring)
    ids = generation_prompt_ids(tokenizer, row, problem, "python", fmt="chat")
    code, how = extract_candidate(completion, code_prompt)   # fenced block, else prompt + completion

Per language the prompt is the problem's own code prompt (HumanEval / HumanEval-X ``prompt``:
imports, signature, docstring) under an instruction to write the whole function; problems
without one (stdin/stdout statements) ask for a complete program. ``fmt="chat"`` renders one user
turn with the tokenizer's chat template; ``fmt="completion"`` (base models) is plain text that ends
inside an open code fence right after the code prompt, so the model continues the function.
Extraction: the completion's last closed fenced block when it has one, else code prompt +
completion up to the first fence (HumanEval-style continuation). ``TEMPLATE_VERSION`` is part of
the generation cache key: change it when the wording changes, so old samples are not reused.
"""
from __future__ import annotations

from typing import Any, Optional

from aletheia_ray.prompts import fence_tag, prompt_token_ids
from aletheia_ray.rewards import extract_code

TEMPLATE_VERSION = "gen-v1"
LANGUAGE_NAMES = {"python": "Python", "cpp": "C++", "java": "Java"}
INSTRUCTION_FUNCTION = (
    "Complete the following {lang} code. Write the whole {what}, with its signature and every import it "
    "needs, in a single ```{tag} code block, and nothing after the code block.")
INSTRUCTION_PROGRAM = (
    "Solve the following programming problem in {lang}. Write a complete program that reads the input from "
    "standard input and prints the answer to standard output, in a single ```{tag} code block.")


def problem_code_prompt(row: dict, language: str) -> str:
    """The code the model should complete in ``language`` ('' when the problem has none).

    HumanEval+ rows carry a Python ``prompt``; HumanEval-X rows a ``prompt`` in the language of their
    task id prefix (``CPP/3``). Other rows (stdio problems) have no code prompt."""
    prompt = row.get("prompt")
    if not isinstance(prompt, str) or not ("entry_point" in row or "declaration" in row):
        return ""
    if "declaration" in row:  # HumanEval-X: the prompt is in the task id's language only
        prefix = str(row.get("task_id", "")).split("/")[0].lower()
        return prompt if {"cpp": "cpp", "java": "java", "python": "python"}.get(prefix) == language else ""
    return prompt if language == "python" else ""


def user_message(row: dict, query: str, language: str) -> str:
    code = problem_code_prompt(row, language)
    lang, tag = LANGUAGE_NAMES.get(language, language), fence_tag(language)
    if code:
        what = "class" if language == "java" else "function"
        return INSTRUCTION_FUNCTION.format(lang=lang, what=what, tag=tag) + f"\n\n```{tag}\n{code.rstrip()}\n```\n"
    return INSTRUCTION_PROGRAM.format(lang=lang, tag=tag) + "\n\n" + query.strip() + "\n"


def generation_prompt_ids(tokenizer: Any, row: dict, query: str, language: str, fmt: str = "chat") -> list[int]:
    """Token ids of the generation prompt (``fmt``: chat | completion; module docstring)."""
    if fmt == "chat":
        return prompt_token_ids(tokenizer, [{"role": "user", "content": user_message(row, query, language)}])
    if fmt != "completion":
        raise ValueError(f"prompt_format must be chat or completion, got {fmt!r}")
    code = problem_code_prompt(row, language)
    head = user_message(row, query, language).split("\n\n```")[0] if code else user_message(row, query, language)
    text = f"{head}\n\n```{fence_tag(language)}\n{code}"
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def extract_candidate(completion: str, code_prompt: str) -> tuple[Optional[str], str]:
    """(code, how): ``fenced`` (the last closed fenced block), ``continuation`` (code prompt +
    completion up to the first fence), or (None, ``empty``) when neither gives any code."""
    block = extract_code(completion)
    if block is not None and block.strip():
        return block, "fenced"
    head = completion.split("```")[0]
    code = code_prompt + head if code_prompt else head
    if not code.strip() or (code_prompt and not head.strip()):
        return None, "empty"
    return code, "continuation"
