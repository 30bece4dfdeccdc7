"""Test-quality filter: drop problems whose tests cannot tell correct code from known-bad code.

Known-good programs: the problem's reference solution (HumanEval / HumanEval-X ``prompt +
canonical_solution``, ``solution_python``, ``solution`` or a call-test ``reference``). Known-bad
programs: trivial mutants of the reference, built per language:

* Python (``ast``): the entry function's body replaced by ``return None`` / ``return 0`` /
  ``return False`` / ``return ''`` / ``return []`` / ``return <first argument>``; ``off_by_one``
  flips the first comparison (``<`` <-> ``<=``, ``>`` <-> ``>=``) and ``negate_condition`` negates the
  first if/while condition, in the function (whole program for stdio solutions, whose body mutants
  are ``pass`` and ``print(0)``);
* C++ / Java with a HumanEval-X code prompt: ``return_default`` (the prompt, then ``return {};``
  in C++ or the return type's zero value in Java, then the closing braces) and ``off_by_one`` on
  the first relational operator inside an if/while/for condition of the canonical body and
  ``negate_condition`` (``if (c)`` -> ``if (!(c))`` on the first if/while; both textual).

A mutant whose text equals the reference's is dropped (it is not known to be bad). A mutant can
still behave like the reference on every input the tests use (an off-by-one on a boundary the
tests never hit: an equivalent mutant); such survivors are listed (``bad_passing``), and the
default ``filter.min_tnr`` (0.6) leaves room for one among three. Rates:
TPR = share of known-good programs passing every test (pass rate 1.0), TNR = share of known-bad
programs failing at least one (pass rate < 1). A problem is dropped when TPR < ``filter.min_tpr``
or TNR < ``filter.min_tnr``; one without a reference or mutants is kept (``unfiltered``) unless
``filter.drop_unfiltered``. Programs are executed with the testbed's cached executor, so a rerun
executes nothing new.
"""
from __future__ import annotations

import ast
import copy
import re
from dataclasses import dataclass, field
from typing import Optional

from aletheia_ray.data.problems import Problem

PY_MUTANTS = {"return_none": "None", "return_zero": "0", "return_false": "False", "return_empty_str": "''",
              "return_empty_list": "[]"}
MUTANTS = (*PY_MUTANTS, "return_first_arg", "return_default", "off_by_one", "negate_condition", "empty_program",
           "print_zero")
FLIP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt}
JAVA_ZERO = {"int": "0", "long": "0", "short": "0", "byte": "0", "char": "0", "double": "0.0", "float": "0.0f",
             "boolean": "false", "String": '""'}
CLIKE_COND = re.compile(r"\b(?:if|while|for)\s*\(")
CLIKE_IF = re.compile(r"\b(?:if|while)\s*\(")
CLIKE_REL = re.compile(r"(?<![<>\-=!])(<=|>=|<|>)(?![<>])")
CLIKE_SWAP = {"<": "<=", "<=": "<", ">": ">=", ">=": ">"}


def reference_solutions(row: dict, problem: Problem) -> dict[str, str]:
    """Reference programs by language (only languages the problem's tests judge)."""
    out: dict[str, str] = {}
    if isinstance(row.get("prompt"), str) and isinstance(row.get("canonical_solution"), str):
        if "declaration" in row:  # HumanEval-X: one language, named by the task id prefix
            lang = {"cpp": "cpp", "java": "java", "python": "python"}.get(str(row.get("task_id", "")).split("/")[0].lower())
        else:
            lang = "python"
        if lang:
            out[lang] = row["prompt"] + row["canonical_solution"]
    for key, lang in (("solution_python", "python"), ("reference", "python"), ("solution", row.get("language"))):
        if isinstance(row.get(key), str) and row[key].strip() and isinstance(lang, str):
            out.setdefault(lang, row[key])
    return {lang: code for lang, code in out.items() if lang in problem.languages}


def _function(tree: ast.Module, entry_point: Optional[str]) -> Optional[ast.FunctionDef]:
    fns = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    named = [f for f in fns if f.name == entry_point]
    return (named or fns[-1:] or [None])[0]


def _flip_first_compare(node: ast.AST) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Compare):
            for k, op in enumerate(sub.ops):
                if type(op) in FLIP:
                    sub.ops[k] = FLIP[type(op)]()
                    return True
    return False


def _negate_first_condition(node: ast.AST) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, (ast.If, ast.While, ast.IfExp)):
            sub.test = ast.UnaryOp(op=ast.Not(), operand=sub.test)
            return True
    return False


def python_mutants(code: str, entry_point: Optional[str] = None) -> dict[str, str]:
    """Named mutants of a Python reference (module docstring); {} when it does not parse."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return {}
    base = ast.unparse(tree)
    fn = _function(tree, entry_point)
    bodies: dict[str, str] = {}
    if fn is not None:
        bodies = {name: f"return {value}" for name, value in PY_MUTANTS.items()}
        params = [a.arg for a in fn.args.posonlyargs + fn.args.args]
        if params:
            bodies["return_first_arg"] = f"return {params[0]}"
    else:
        bodies = {"empty_program": "pass", "print_zero": "print(0)"}
    out: dict[str, str] = {}
    for name, stmt in bodies.items():
        mutant = copy.deepcopy(tree)
        target = _function(mutant, entry_point) if fn is not None else mutant
        doc = target.body[:1] if fn is not None and ast.get_docstring(target, clean=False) is not None else []
        target.body = doc + ast.parse(stmt).body
        out[name] = ast.unparse(mutant)
    for name, mutate in (("off_by_one", _flip_first_compare), ("negate_condition", _negate_first_condition)):
        mutant = copy.deepcopy(tree)
        if mutate(_function(mutant, entry_point) if fn is not None else mutant):
            out[name] = ast.unparse(mutant)
    return {name: m for name, m in out.items() if m != base}


def _java_zero(signature: str) -> str:
    words = signature.split("(")[0].split()[:-1]  # drop the method name
    rtype = " ".join(w for w in words if w not in ("public", "private", "protected", "static", "final"))
    if rtype.startswith("Optional"):
        return "Optional.empty()"
    return JAVA_ZERO.get(rtype, "null")


def _matching_paren(code: str, start: int) -> int:
    """Offset just past the ``)`` closing the ``(`` that ends right before ``start``."""
    depth, end = 1, start
    while end < len(code) and depth:
        depth += {"(": 1, ")": -1}.get(code[end], 0)
        end += 1
    return end


def _first_condition_comparison(code: str) -> Optional[tuple[int, str]]:
    """(offset, operator) of the first relational operator inside an if/while/for condition."""
    for cond in CLIKE_COND.finditer(code):
        m = CLIKE_REL.search(code, cond.end(), _matching_paren(code, cond.end()))
        if m:
            return m.start(), m.group(1)
    return None


def clike_mutants(language: str, code_prompt: str, canonical: str) -> dict[str, str]:
    """Mutants of a HumanEval-X C++/Java reference = ``code_prompt + canonical`` (module docstring)."""
    if language not in ("cpp", "java") or not code_prompt.strip():
        return {}
    signature = code_prompt.rstrip().splitlines()[-1]
    if language == "cpp":
        body = "    return {};\n}\n"
    else:
        body = f"        return {_java_zero(signature)};\n    }}\n}}\n"
    out = {"return_default": code_prompt + body}
    at = _first_condition_comparison(canonical)
    if at is not None:
        start, op = at
        out["off_by_one"] = code_prompt + canonical[:start] + CLIKE_SWAP[op] + canonical[start + len(op):]
    cond = CLIKE_IF.search(canonical)
    if cond:
        close = _matching_paren(canonical, cond.end())
        out["negate_condition"] = (code_prompt + canonical[:cond.end()] + "!(" + canonical[cond.end():close - 1]
                                   + ")" + canonical[close - 1:])
    reference = code_prompt + canonical
    return {name: m for name, m in out.items() if m != reference}


def mutants_for(row: dict, problem: Problem, language: str, reference: str, names: list[str]) -> dict[str, str]:
    """The configured mutants (``names``) of ``reference`` in ``language``."""
    if language == "python":
        out = python_mutants(reference, problem.tests.get("entry_point") or row.get("entry_point"))
    elif "declaration" in row and isinstance(row.get("canonical_solution"), str):
        out = clike_mutants(language, row["prompt"], row["canonical_solution"])
    else:
        out = {}
    return {name: code for name, code in out.items() if name in names}


@dataclass
class Quality:
    problem_id: str
    good: dict[str, Optional[float]] = field(default_factory=dict)  # "language:reference" -> pass rate
    bad: dict[str, Optional[float]] = field(default_factory=dict)  # "language:mutant" -> pass rate

    @property
    def tpr(self) -> Optional[float]:
        rates = [r for r in self.good.values() if r is not None]
        return sum(r >= 1.0 for r in rates) / len(rates) if rates else None

    @property
    def tnr(self) -> Optional[float]:
        rates = [r for r in self.bad.values() if r is not None]
        return sum(r < 1.0 for r in rates) / len(rates) if rates else None

    def verdict(self, min_tpr: float, min_tnr: float) -> str:
        """``keep`` | ``drop`` | ``unfiltered`` (no executed reference or no executed mutant)."""
        tpr, tnr = self.tpr, self.tnr
        if tpr is None or tnr is None:
            return "unfiltered"
        return "keep" if tpr >= min_tpr and tnr >= min_tnr else "drop"

    def to_dict(self) -> dict:
        r = lambda x: None if x is None else round(x, 4)  # noqa: E731
        return {"problem_id": self.problem_id, "tpr": r(self.tpr), "tnr": r(self.tnr),
                "good": {k: r(v) for k, v in sorted(self.good.items())},
                "bad": {k: r(v) for k, v in sorted(self.bad.items())},
                "bad_passing": sorted(k for k, v in self.bad.items() if v is not None and v >= 1.0)}
