"""Registry of adversarial code transforms (paper Appendix C).

Each transform is a named, pure function ``fn(code, language, rng) -> code`` that must keep the
program's behaviour. ``positive`` transforms bias a verifier *towards* a program and are applied
to incorrect candidates; ``negative`` ones bias it *against* a program and are applied to the
correct candidate.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

TransformFn = Callable[[str, str, random.Random], str]
POLARITIES = ("positive", "negative")


@dataclass(frozen=True)
class AdvTransform:
    name: str
    polarity: str
    family: str
    fn: TransformFn

    def __call__(self, code: str, language: str, rng: random.Random) -> str:
        return self.fn(code, language, rng)


ADV_TRANSFORMS: dict[str, AdvTransform] = {}


def register(name: str, polarity: str, family: str) -> Callable[[TransformFn], TransformFn]:
    if polarity not in POLARITIES:
        raise ValueError(f"transform {name}: polarity must be one of {POLARITIES}")

    def deco(fn: TransformFn) -> TransformFn:
        if name in ADV_TRANSFORMS:
            raise ValueError(f"adversarial transform {name!r} registered twice")
        ADV_TRANSFORMS[name] = AdvTransform(name, polarity, family, fn)
        return fn

    return deco


def get_transform(name: str) -> AdvTransform:
    try:
        return ADV_TRANSFORMS[name]
    except KeyError:
        raise KeyError(f"unknown adversarial transform {name!r}; known: {sorted(ADV_TRANSFORMS)}") from None


def names(polarity: str) -> list[str]:
    return sorted(n for n, t in ADV_TRANSFORMS.items() if t.polarity == polarity)
