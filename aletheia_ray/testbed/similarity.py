"""Code length and within-list code similarity for stats.md.

Tokens: by default a regex code tokenizer (identifiers/numbers as one token, every other
non-space character as its own token), or a local Hugging Face tokenizer directory.
Similarity of two programs: ``difflib.SequenceMatcher(None, tokens_a, tokens_b).ratio()`` on their
token sequences (2 * matched tokens / total tokens, in [0, 1]; 1 = identical token sequences).
Within-list similarity: the mean over all unordered candidate pairs of the list.
"""
from __future__ import annotations

import difflib
import re
from itertools import combinations
from typing import Callable, Optional

_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?|\S")


def regex_tokens(code: str) -> list[str]:
    return _TOKEN.findall(code)


def make_tokenizer(path: Optional[str]) -> Callable[[str], list]:
    if path is None:
        return regex_tokens
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    return lambda code: tok(code, add_special_tokens=False)["input_ids"]


def pair_similarity(a: list, b: list) -> float:
    if not a and not b:
        return 1.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def within_list_similarity(token_lists: list[list]) -> float:
    pairs = list(combinations(token_lists, 2))
    return sum(pair_similarity(a, b) for a, b in pairs) / len(pairs)
