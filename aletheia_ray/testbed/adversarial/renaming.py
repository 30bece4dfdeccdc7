"""Identifier renaming of the correct candidate (negative bias): meaningless local names.

Python: function parameters and function-local variables (found with ``ast``) are renamed at
their exact source positions, so formatting and comments stay. Names that can be seen from
outside are kept: module-level names, function/class names, imports, names used as keyword
arguments or in f-strings, ``global``/``nonlocal`` names, builtins, ``self``/``cls`` and dunders.
C++/Java: variables declared as ``TYPE name`` followed by ``= ; , ) [ :`` are renamed token by
token outside strings/comments, except names ever used as members (after ``.``/``->``/``::``),
called like functions, used in preprocessor lines, ``main``, or starting with an upper-case letter.
"""
from __future__ import annotations

import ast
import builtins
import random
import re

from aletheia_ray.testbed.adversarial.registry import register
from aletheia_ray.testbed.clike import keywords, tokenize

_KEEP = {"self", "cls", "main", "_"}
_TYPE_WORDS = {"int", "long", "double", "float", "char", "bool", "boolean", "auto", "string", "String",
               "short", "unsigned", "size_t", "var", "ll", "byte", "Integer", "Long", "Double"}
_DECL_FOLLOW = {"=", ";", ",", ")", "[", ":"}


def _fresh_names(count: int, taken: set[str], rng: random.Random) -> list[str]:
    pool = [f"v{i}" for i in range(count + len(taken) + 8) if f"v{i}" not in taken]
    rng.shuffle(pool)
    return pool[:count]


def _python_rename_map(tree: ast.AST, rng: random.Random, code: str) -> dict[str, str]:
    local, outside, blocked = set(), set(), set()
    func_nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))]
    inside_ids = set()
    for fn in func_nodes:
        for node in ast.walk(fn):
            inside_ids.add(id(node))
            if isinstance(node, ast.arg):
                local.add(node.arg)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                local.add(node.id)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            blocked.add(node.name)
        elif isinstance(node, ast.alias):
            blocked.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            blocked.update(node.names)
        elif isinstance(node, ast.keyword) and node.arg:
            blocked.add(node.arg)
        elif isinstance(node, ast.JoinedStr):
            blocked.update(n.id for n in ast.walk(node) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Name) and id(node) not in inside_ids:
            outside.add(node.id)
    names = sorted(n for n in local - outside - blocked - _KEEP
                   if not hasattr(builtins, n) and not (n.startswith("__") and n.endswith("__")))
    taken = set(re.findall(r"[A-Za-z_]\w*", code))
    return dict(zip(names, _fresh_names(len(names), taken, rng)))


def _python(code: str, rng: random.Random) -> str:
    tree = ast.parse(code)
    mapping = _python_rename_map(tree, rng, code)
    edits: dict[int, list[tuple[int, str, str]]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in mapping:
            edits.setdefault(node.lineno, []).append((node.col_offset, node.id, mapping[node.id]))
        elif isinstance(node, ast.arg) and node.arg in mapping:
            edits.setdefault(node.lineno, []).append((node.col_offset, node.arg, mapping[node.arg]))
    lines = code.splitlines(keepends=True)
    for lineno, line_edits in edits.items():
        raw = lines[lineno - 1].encode("utf-8")
        for col, old, new in sorted(line_edits, reverse=True):
            if raw[col : col + len(old.encode())] != old.encode():
                raise ValueError(f"identifier_renaming: {old!r} not found at line {lineno} col {col}")
            raw = raw[:col] + new.encode() + raw[col + len(old.encode()) :]
        lines[lineno - 1] = raw.decode("utf-8")
    return "".join(lines)


def _clike(code: str, language: str, rng: random.Random) -> str:
    toks = tokenize(code, language)
    sig = [i for i, t in enumerate(toks) if t.kind not in ("ws", "nl", "comment")]
    declared, blocked = set(), set(_KEEP) | set(keywords(language))
    for k, i in enumerate(sig):
        tok = toks[i]
        if tok.kind == "pp":
            blocked.update(re.findall(r"[A-Za-z_]\w*", tok.text))
        if tok.kind != "ident":
            continue
        prev = toks[sig[k - 1]].text if k > 0 else ""
        prev2 = toks[sig[k - 2]].text if k > 1 else ""
        nxt = toks[sig[k + 1]].text if k + 1 < len(sig) else ""
        if prev in (".", ">") and prev2 in ("-", ":") or prev == "." or (prev == ":" and prev2 == ":"):
            blocked.add(tok.text)  # member access: a.x, a->x, ns::x
        if nxt == "(" or nxt == ":" and k + 2 < len(sig) and toks[sig[k + 2]].text == ":":
            blocked.add(tok.text)  # called or a namespace/class qualifier
        if (prev in _TYPE_WORDS or prev in (">", "*", "&")) and nxt in _DECL_FOLLOW:
            declared.add(tok.text)
    names = sorted(n for n in declared - blocked if not n[0].isupper())
    taken = {t.text for t in toks if t.kind == "ident"}
    mapping = dict(zip(names, _fresh_names(len(names), taken, rng)))
    return "".join(mapping.get(t.text, t.text) if t.kind == "ident" else t.text for t in toks)


@register("identifier_renaming", "negative", "renaming")
def rename_identifiers(code: str, language: str, rng: random.Random) -> str:
    """Rename local identifiers to meaningless ``vN`` names (see the module docstring)."""
    if language == "python":
        return _python(code, rng)
    if language in ("cpp", "java"):
        return _clike(code, language, rng)
    raise ValueError(f"identifier_renaming: unsupported language {language!r}")
