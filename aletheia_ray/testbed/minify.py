"""Minification: python-minifier for Python, a rule-based minifier for C++/Java.

The C++/Java minifier (on ``clike`` tokens) drops comments and all whitespace except a single
space where two tokens would otherwise fuse (two words, or two operator characters such as
``- -`` or ``> >``); preprocessor lines stay on their own lines. Unlike the authors' C minifier it
keeps char literals as written (``'a'`` -> ``97`` changes what ``cout << 'a'`` prints).
"""
from __future__ import annotations

import python_minifier

from aletheia_ray.testbed.clike import tokenize

_WORD_KINDS = ("ident", "number")
_FUSING = set("+-*/%&|<>=!:.^")


def minify_python(code: str) -> str:
    """python-minifier with module-level names kept (tests call the entry point by name)."""
    return python_minifier.minify(
        code, rename_globals=False, rename_locals=True, remove_literal_statements=True,
        hoist_literals=False,
    )


def _needs_space(prev, nxt) -> bool:
    if prev.kind in _WORD_KINDS and nxt.kind in _WORD_KINDS:
        return True
    if prev.kind in ("string", "char") and nxt.kind == "ident":
        return True
    if prev.kind == "ident" and nxt.kind in ("string", "char"):
        return True  # e.g. `return"x"` is fine, but `L "x"` must not become a wide literal
    return prev.kind == "punct" and nxt.kind == "punct" and prev.text in _FUSING and nxt.text in _FUSING


def minify_clike(code: str, language: str) -> str:
    out: list[str] = []
    prev = None
    pending_space = False
    for tok in tokenize(code, language):
        if tok.kind in ("ws", "nl", "comment"):
            pending_space = pending_space or prev is not None
            continue
        if tok.kind == "pp":
            if out and not out[-1].endswith("\n"):
                out.append("\n")
            out.append(tok.text.strip() + "\n")
            prev, pending_space = None, False
            continue
        if prev is not None and pending_space and _needs_space(prev, tok):
            out.append(" ")
        out.append(tok.text)
        prev, pending_space = tok, False
    text = "".join(out)
    return text if text.endswith("\n") else text + "\n"


def minify(code: str, language: str) -> str:
    """Minify ``code``; raises on code that does not parse (Python) or lex (C++/Java)."""
    if language == "python":
        return minify_python(code)
    if language in ("cpp", "java"):
        return minify_clike(code, language)
    raise ValueError(f"minify: unsupported language {language!r} (python, cpp, java)")
