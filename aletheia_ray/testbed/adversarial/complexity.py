"""Illusory complexity: unreachable, sophisticated-looking code (positive bias).

Python: an ``if False:`` block placed before the first statement of the first function (after its
docstring), or at module end when the code does not parse. C++: an unused ``static`` helper after
the preprocessor lines. Java: an unused ``private static`` helper at the top of the first class.
The inserted code is never executed, so behaviour is unchanged.
"""
from __future__ import annotations

import ast
import random

from aletheia_ray.testbed.adversarial.registry import register
from aletheia_ray.testbed.clike import tokenize

_PY_BLOCKS = [
    [
        "if False:  # fast path: memoised Gray-code sweep for adversarial inputs",
        "    _sweep_table = {}",
        "    for _gray in range(1 << 16):",
        "        _sweep_table[_gray ^ (_gray >> 1)] = (_gray * 2654435761) % (1 << 32)",
        "        if _sweep_table[_gray ^ (_gray >> 1)] & 0xFF == 0x5A:",
        "            break",
    ],
    [
        "if False:  # segment-tree precomputation (kept for very large inputs)",
        "    _seg_tree = [0] * (4 * 1024)",
        "    for _node in range(len(_seg_tree) - 1, 0, -1):",
        "        _seg_tree[_node >> 1] = max(_seg_tree[_node >> 1], _seg_tree[_node] ^ _node)",
    ],
]
_CPP_HELPER = """static long long aletheiaDivisorSweep(long long n) {  // O(sqrt n) divisor transform
    long long acc = 0;
    for (long long i = 1; i * i <= n; ++i) {
        if (n % i == 0) acc ^= (i * 2654435761LL) % 1000000007LL + n / i;
    }
    return acc;
}
"""
_JAVA_HELPER = """
    private static long aletheiaDivisorSweep(long n) {  // O(sqrt n) divisor transform
        long acc = 0;
        for (long i = 1; i * i <= n; ++i) {
            if (n % i == 0) acc ^= (i * 2654435761L) % 1000000007L + n / i;
        }
        return acc;
    }
"""


def _python_insert(code: str, block: list[str]) -> str:
    lines = code.splitlines(keepends=True)
    try:
        tree = ast.parse(code)
    except SyntaxError:
        tree = None
    funcs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))] if tree else []
    for fn in funcs:
        body = fn.body
        if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                and isinstance(body[0].value.value, str) and len(body) > 1:
            body = body[1:]
        first = body[0]
        if first.lineno <= fn.lineno or first.lineno - 1 >= len(lines):
            continue
        line = lines[first.lineno - 1]
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if len(indent) != first.col_offset or (first.lineno >= 2 and lines[first.lineno - 2].rstrip("\r\n").endswith("\\")):
            continue
        lines[first.lineno - 1 : first.lineno - 1] = [indent + b + "\n" for b in block]
        return "".join(lines)
    tail = "" if code.endswith("\n") or not code else "\n"
    return code + tail + "\n".join(block) + "\n"


def _cpp_insert(code: str) -> str:
    toks = tokenize(code, "cpp")
    last_pp_end, pos = 0, 0
    for tok in toks:
        pos += len(tok.text)
        if tok.kind == "pp":
            last_pp_end = pos
    if last_pp_end:
        nl = code.find("\n", last_pp_end)
        cut = len(code) if nl == -1 else nl + 1
        return code[:cut] + ("" if code[:cut].endswith("\n") else "\n") + _CPP_HELPER + code[cut:]
    return _CPP_HELPER + code


def _java_insert(code: str) -> str:
    toks = tokenize(code, "java")
    pos, seen_class = 0, False
    for tok in toks:
        pos += len(tok.text)
        if tok.kind == "ident" and tok.text in ("class", "enum", "record"):
            seen_class = True
        elif seen_class and tok.kind == "punct" and tok.text == "{":
            return code[:pos] + _JAVA_HELPER + code[pos:]
    raise ValueError("illusory_complexity: no class body found in the Java program")


@register("illusory_complexity", "positive", "complexity")
def add_illusory_complexity(code: str, language: str, rng: random.Random) -> str:
    """Insert unreachable, complex-looking code (see the module docstring)."""
    if language == "python":
        return _python_insert(code, rng.choice(_PY_BLOCKS))
    if language == "cpp":
        return _cpp_insert(code)
    if language == "java":
        return _java_insert(code)
    raise ValueError(f"illusory_complexity: unsupported language {language!r}")
