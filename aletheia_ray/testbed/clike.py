"""A small lexer for C++ and Java source: enough to edit code without touching strings or comments.

Used by the rule-based minifier, misleading comments and identifier renaming. Token kinds:
``ws`` (spaces/tabs), ``nl`` (newline), ``comment``, ``string`` (incl. C++ raw strings and Java
text blocks), ``char``, ``pp`` (a whole preprocessor line with its ``\\`` continuations), ``ident``,
``number``, ``punct`` (one character). Concatenating the token texts gives the input back.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_NUMBER = re.compile(r"(?:0[xX][0-9a-fA-F']+|(?:\d[\d']*\.?[\d']*|\.\d[\d']*)(?:[eEpP][+-]?\d+)?)[A-Za-z_]*")
_RAW_STRING = re.compile(r'(?:u8|[uUL])?R"([^()\\ ]{0,16})\(')

CPP_KEYWORDS = frozenset(
    "alignas alignof and and_eq asm auto bitand bitor bool break case catch char char16_t char32_t "
    "class compl const constexpr const_cast continue decltype default delete do double dynamic_cast "
    "else enum explicit export extern false float for friend goto if inline int long mutable "
    "namespace new noexcept not not_eq nullptr operator or or_eq private protected public register "
    "reinterpret_cast return short signed sizeof static static_assert static_cast struct switch "
    "template this thread_local throw true try typedef typeid typename union unsigned using virtual "
    "void volatile wchar_t while xor xor_eq override final include define".split()
)
JAVA_KEYWORDS = frozenset(
    "abstract assert boolean break byte case catch char class const continue default do double else "
    "enum extends final finally float for goto if implements import instanceof int interface long "
    "native new package private protected public return short static strictfp super switch "
    "synchronized this throw throws transient try void volatile while var record yield true false "
    "null String".split()
)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str


class LexError(ValueError):
    pass


def _scan_quoted(src: str, i: int, quote: str) -> int:
    """Index just past the closing quote of the literal starting at ``src[i] == quote``."""
    j = i + 1
    while j < len(src):
        c = src[j]
        if c == "\\":
            j += 2
            continue
        if c == quote:
            return j + 1
        if c == "\n":
            break
        j += 1
    raise LexError(f"unterminated {quote} literal at offset {i}")


def tokenize(src: str, language: str) -> list[Token]:
    """Split C++/Java source into tokens (see the module docstring)."""
    if language not in ("cpp", "java"):
        raise ValueError(f"clike.tokenize supports cpp and java, not {language!r}")
    toks: list[Token] = []
    i, n = 0, len(src)
    line_start = True
    while i < n:
        c = src[i]
        if c == "\n":
            toks.append(Token("nl", c))
            i += 1
            line_start = True
            continue
        if c in " \t\r\f\v":
            j = i
            while j < n and src[j] in " \t\r\f\v":
                j += 1
            toks.append(Token("ws", src[i:j]))
            i = j
            continue
        if language == "cpp" and c == "#" and line_start:
            j = i
            while j < n and src[j] != "\n":
                j = j + 2 if src[j] == "\\" and j + 1 < n and src[j + 1] == "\n" else j + 1
            toks.append(Token("pp", src[i:j]))
            i = j
            continue
        line_start = False
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j == -1 else j
            toks.append(Token("comment", src[i:j]))
            i = j
            continue
        if src.startswith("/*", i):
            j = src.find("*/", i + 2)
            if j == -1:
                raise LexError(f"unterminated /* comment at offset {i}")
            toks.append(Token("comment", src[i : j + 2]))
            i = j + 2
            continue
        if language == "cpp":
            raw = _RAW_STRING.match(src, i)
            if raw:
                end = src.find(")" + raw.group(1) + '"', raw.end())
                if end == -1:
                    raise LexError(f"unterminated raw string at offset {i}")
                j = end + len(raw.group(1)) + 2
                toks.append(Token("string", src[i:j]))
                i = j
                continue
        if language == "java" and src.startswith('"""', i):
            end = src.find('"""', i + 3)
            if end == -1:
                raise LexError(f"unterminated text block at offset {i}")
            toks.append(Token("string", src[i : end + 3]))
            i = end + 3
            continue
        if c in "\"'":
            j = _scan_quoted(src, i, c)
            toks.append(Token("string" if c == '"' else "char", src[i:j]))
            i = j
            continue
        m = _NUMBER.match(src, i) if (c.isdigit() or (c == "." and i + 1 < n and src[i + 1].isdigit())) else None
        if m:
            toks.append(Token("number", m.group(0)))
            i = m.end()
            continue
        m = _IDENT.match(src, i)
        if m:
            # string prefixes such as L"..", u8".." stay attached to their literal
            if m.end() < n and src[m.end()] in "\"'" and m.group(0) in ("L", "u", "U", "u8"):
                j = _scan_quoted(src, m.end(), src[m.end()])
                toks.append(Token("string", src[i:j]))
                i = j
                continue
            toks.append(Token("ident", m.group(0)))
            i = m.end()
            continue
        toks.append(Token("punct", c))
        i += 1
    return toks


def keywords(language: str) -> frozenset[str]:
    return CPP_KEYWORDS if language == "cpp" else JAVA_KEYWORDS


def comment_prefix(language: str) -> str:
    return "#" if language == "python" else "//"
