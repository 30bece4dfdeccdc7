"""Minification of the correct candidate (negative bias): unreadable but equivalent code."""
from __future__ import annotations

import random

from aletheia_ray.testbed.adversarial.registry import register
from aletheia_ray.testbed.minify import minify


@register("minification", "negative", "minification")
def minify_code(code: str, language: str, rng: random.Random) -> str:
    """python-minifier for Python, the rule-based minifier for C++/Java (deterministic)."""
    return minify(code, language)
