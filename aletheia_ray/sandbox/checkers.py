"""Host-side comparison of a program's stdout with the expected output (stdin/stdout tests)."""
from __future__ import annotations

import math
from typing import Callable, Optional

FLOAT_ABS_TOL = 1e-6
FLOAT_REL_TOL = 1e-6
SANDBOXFUSION_REL_TOL = 1e-5


def _float(token: str) -> Optional[float]:
    try:
        value = float(token)
    except ValueError:
        return None
    return value


def exact(out: str, expected: str) -> bool:
    """Byte-for-byte equal."""
    return out == expected


def tokens(out: str, expected: str) -> bool:
    """Equal as whitespace-separated tokens (Kattis/Codeforces default)."""
    return out.split() == expected.split()


def float_tokens(out: str, expected: str, abs_tol: float = FLOAT_ABS_TOL,
                 rel_tol: float = FLOAT_REL_TOL) -> bool:
    """Tokens equal, numeric tokens within an absolute OR relative tolerance."""
    got, want = out.split(), expected.split()
    if len(got) != len(want):
        return False
    for a, b in zip(got, want):
        if a == b:
            continue
        fa, fb = _float(a), _float(b)
        if fa is None or fb is None or math.isnan(fa) or math.isnan(fb):
            return False
        if not math.isclose(fa, fb, rel_tol=rel_tol, abs_tol=abs_tol):
            return False
    return True


def sandboxfusion(out: str, expected: str) -> bool:
    """SandboxFusion's rule: strip, split lines, per line lower-case + strip; floats rel 1e-5."""
    got, want = out.strip().split("\n"), expected.strip().split("\n")
    if len(got) != len(want):
        return False
    for a, b in zip(got, want):
        a, b = a.strip().lower(), b.strip().lower()
        if a == b:
            continue
        fa, fb = _float(a), _float(b)
        if fa is None or fb is None or not math.isclose(fa, fb, rel_tol=SANDBOXFUSION_REL_TOL):
            return False
    return True


CHECKERS: dict[str, Callable[[str, str], bool]] = {
    "exact": exact, "tokens": tokens, "float": float_tokens, "sandboxfusion": sandboxfusion,
}


def checker(name: str) -> Callable[[str, str], bool]:
    if name not in CHECKERS:
        raise ValueError(f"checker: unknown {name!r} (known: {', '.join(CHECKERS)})")
    return CHECKERS[name]
