"""Code-generation task (``data.kind: codegen``): problems -> prompts, cold-start targets, reward items.

    tasks, report = load_codegen_tasks("../shared/data/humanevalplus_dev.jsonl.gz")
    ids = codegen_prompt_ids(tasks[0], tokenizer, style="instruct")   # chat template, one user turn
    text = codegen_completion(stub_code(tasks[0]), style="instruct")   # a well-formed answer

Problems are read with the testbed's loader (``aletheia_ray.data.problems``: generic rows,
HumanEval+, CodeContests-style ``tests``), so every row layout it knows works here; rows it
rejects (no tests, malformed) are counted by category in the report, never dropped silently.
Each task carries a sandbox ``Submission`` template (tests, limits, empty code): the reward pool
(``actors/reward.py`` with ``rewards.PassRateScorer``) swaps in the completion's last fenced code block
(``rewards.extract_code``), and a completion without one gets the format penalty and is
counted as unparseable. Solutions are asked for in Python (call tests are Python-only).
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
import random
from pathlib import Path
from typing import Any, Optional, Sequence

from aletheia_ray.prompts import STYLES, THINK_CLOSE, fenced, prompt_token_ids
from aletheia_ray.sandbox.types import Submission
from aletheia_ray.data.problems import ID_KEYS, ProblemsConfig, load_problems, read_jsonl
from aletheia_ray.data.report import BuildReport
from aletheia_ray.eval_schedule import eval_keys, pass_eval_metrics
from aletheia_ray.rewards import PassRateScorer
from aletheia_ray.tasks.base import Task, TaskData, overlong, prompt_budget, select_items

LANGUAGE = "python"
SOLUTION_KEYS = ("solution_python", "solution", "canonical_solution")  # cold_start.targets: correct
log = logging.getLogger("aletheia_ray.tasks.codegen")

TASK_INTRO = "Solve the following programming problem in Python."
HOW_CALL = ("Write the complete function `{entry_point}`, with its signature and every import it needs: "
            "the tests call it directly.")
HOW_STDIO = "Write a complete program that reads the input from standard input and prints the answer to standard output."
ANSWER_FORMAT = {
    "instruct": "Reply with the whole solution in a single ```python code block. Write nothing after the code block.",
    "think": (f"Think it through first and close your reasoning with {THINK_CLOSE}. After {THINK_CLOSE}, write only "
              "the whole solution in a single ```python code block."),
}


@dataclass
class CodegenTask:
    idx: str  # the problem id (named like VerifierList.idx, so the shared data filters can name it)
    query: str
    template: Submission  # tests + limits, empty code: what the reward pool fills in (PassRateScorer)
    entry_point: Optional[str] = None  # call tests (HumanEval+); None: stdin/stdout tests
    solution: Optional[str] = None  # a reference solution (cold_start.targets: correct)


def _solution(row: dict) -> Optional[str]:
    if row.get("canonical_solution") and row.get("prompt") and row.get("entry_point"):
        return row["prompt"] + row["canonical_solution"]  # HumanEval+: the body completes the prompt
    return next((row[k] for k in SOLUTION_KEYS if isinstance(row.get(k), str) and row[k].strip()), None)


def load_codegen_tasks(path: str, *, max_call_inputs: int = 60) -> tuple[list[CodegenTask], dict[str, Any]]:
    """Python-judgeable problems of ``path`` (file order) and a report of what was skipped and why."""
    report = BuildReport()
    problems = load_problems(path, ProblemsConfig(min_tests=1, max_call_inputs=max_call_inputs), report)
    solutions = {}
    for _, row in read_jsonl(path):
        pid = next((row[k] for k in ID_KEYS if isinstance(row, dict) and row.get(k) not in (None, "")), None)
        if pid is not None:
            solutions.setdefault(str(pid), _solution(row))
    tasks = []
    for pid, problem in problems.items():
        if LANGUAGE not in problem.languages:
            report.add("not_python", pid, f"tests judge only {problem.languages}")
            continue
        tasks.append(CodegenTask(idx=pid, query=problem.query, template=problem.submission(pid, LANGUAGE, ""),
                                 entry_point=problem.tests.get("entry_point"), solution=solutions.get(pid)))
    if not tasks:
        raise ValueError(f"data.train_path {path}: no problem with Python-judgeable tests "
                         f"(skipped: {dict(Counter({k: len(v) for k, v in report.issues.items()}))})")
    for category, items in sorted(report.issues.items()):
        log.warning("%s: %d problems skipped (%s), e.g. %s", path, len(items), category, items[0]["message"])
    skipped = {f"data/skipped_{k}": len(v) for k, v in sorted(report.issues.items())}
    return tasks, {"data/num_problems_read": len(tasks) + sum(skipped.values()), **skipped}


def codegen_user_prompt(task: CodegenTask, *, style: str = "instruct") -> str:
    """The user turn: what to write (function or stdio program), the problem, the answer format."""
    if style not in STYLES:
        raise ValueError(f"unknown prompt style {style!r}; use one of {STYLES}")
    if not task.query.strip():
        raise ValueError(f"problem {task.idx}: empty problem statement")
    how = HOW_CALL.format(entry_point=task.entry_point) if task.entry_point else HOW_STDIO
    return "\n\n".join([f"{TASK_INTRO} {how}", "## Problem\n\n" + task.query.strip(),
                        "## Your answer\n\n" + ANSWER_FORMAT[style]]) + "\n"


def codegen_messages(task: CodegenTask, *, style: str = "instruct") -> list[dict]:
    return [{"role": "user", "content": codegen_user_prompt(task, style=style)}]


def codegen_prompt_ids(task: CodegenTask, tokenizer: Any, *, style: str = "instruct") -> list[int]:
    """Chat-template token ids of one code-generation prompt."""
    return prompt_token_ids(tokenizer, codegen_messages(task, style=style))


def codegen_completion(code: str, style: str = "instruct", reasoning: str = "") -> str:
    """A well-formed answer (cold-start target): the code in a ```python block (think: after </think>)."""
    block = fenced(code, LANGUAGE)
    if style == "think":
        return f"{reasoning.strip()}\n{THINK_CLOSE}\n\n{block}"
    return f"{reasoning.strip()}\n{block}".strip()


def stub_code(task: CodegenTask) -> str:
    """A runnable program with the task's interface that solves nothing (format-only cold start)."""
    if task.entry_point:
        return f"def {task.entry_point}(*args):\n    return None"
    return "print(0)"


def cold_start_code(task: CodegenTask, targets: str) -> str:
    """The code of a cold-start target: the reference solution ("correct") or ``stub_code`` ("stub")."""
    if targets == "stub":
        return stub_code(task)
    if targets != "correct":
        raise ValueError(f"cold_start.targets {targets!r} is not for data.kind codegen; use one of {CodeGenerationTask.cold_start_targets}")
    if not task.solution:
        raise ValueError(f"problem {task.idx}: cold_start.targets 'correct' needs a reference solution "
                         f"(one of {SOLUTION_KEYS}) in the row")
    return task.solution


class CodeGenerationTask(Task):
    """Problems with tests; the reward is the sandbox pass rate of the generated program."""
    name = "codegen"
    reward_fns = ("pass_rate",)
    cold_start_targets = ("correct", "stub")
    item_noun = "problems"
    eval_accuracy_key = "eval/pass_at_1"  # held-out problems whose sample passes every test

    def load(self, cfg: Any, tokenizer: Any) -> TaskData:
        tasks, ids, read_report, report = self._read(cfg.data.train_path, "data.train_path", cfg, tokenizer)
        return TaskData(tasks, ids, [t.template for t in tasks], {**read_report, **report})

    def heldout(self, cfg: Any, tokenizer: Any) -> Optional[TaskData]:
        """Held-out problems (``evaluation.data_path``), prompted and filtered like the training ones;
        the first ``evaluation.num_lists`` of them."""
        e = cfg.evaluation
        tasks, ids, _, report = self._read(e.data_path, "evaluation.data_path", cfg, tokenizer)
        report["eval/dropped_num_lists"] = max(0, len(tasks) - e.num_lists)
        tasks, ids = tasks[:e.num_lists], ids[:e.num_lists]
        return TaskData(tasks, ids, [t.template for t in tasks], report)

    @staticmethod
    def _read(path: str, key: str, cfg: Any, tokenizer: Any):
        """Problems of ``path`` (config key ``key``), prompted, then kept by the prompt-length filters;
        with the reading and the filters' reports."""
        d = cfg.data
        if not Path(path).exists():
            raise FileNotFoundError(f"{key}: file {path} not found")
        tasks, read_report = load_codegen_tasks(path, max_call_inputs=d.max_call_inputs)
        ids = [codegen_prompt_ids(task, tokenizer, style=d.prompt_style) for task in tasks]
        tasks, ids, report = select_items(tasks, ids, budget=prompt_budget(cfg), max_prompt_tokens=d.max_prompt_tokens,
                                          source=path)
        return tasks, ids, read_report, report

    def eval_keys(self, k: int) -> tuple[str, ...]:
        return eval_keys(self.eval_accuracy_key, self.item_noun, k, code=True)

    def heldout_metrics(self, items: Sequence[Any], gens: Sequence[Any], k: int) -> dict[str, float]:
        return pass_eval_metrics(gens, len(items), k=k, noun=self.item_noun)

    def cold_start_text(self, item: CodegenTask, targets: str, style: str, reasoning: str,
                        rng: random.Random, fn: Optional[str] = None) -> str:
        return codegen_completion(cold_start_code(item, targets), style, reasoning)

    def scorer(self, cfg: Any) -> PassRateScorer:
        return PassRateScorer(overlong=overlong(cfg))
