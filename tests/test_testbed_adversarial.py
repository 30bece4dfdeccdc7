"""Adversarial transforms (paper Appendix C): each named transform on real fixture programs.

Pure checks (no sandbox): registry contents, what each transform writes, Python variants still
compile, C++/Java lexing round-trips. Behaviour in the sandbox: test_testbed_sandbox.py.
"""
import ast
import json
import random

import pytest

from aletheia_ray.testbed.adversarial import ADV_TRANSFORMS, get_transform, names
from aletheia_ray.testbed.adversarial.statements import STATEMENTS
from aletheia_ray.testbed.clike import tokenize
from fixture_paths import SHARED_DATA

DATA = SHARED_DATA
POSITIVE = {"authority", "egocentric", "external_reference", "bandwagon", "illusory_complexity",
            "self_declared_correctness"}
NEGATIVE = {"minification", "misleading_comments", "identifier_renaming", "reverse_authority",
            "reverse_bandwagon", "self_declared_incorrectness"}


def _python_programs(n=60):
    rows = [json.loads(l) for l in open(DATA / "humaneval_scored_candidates_dev.jsonl")]
    progs = [c["code"] for r in rows for c in r["candidates"]]
    return random.Random(7).sample(progs, n)


def _x_programs(lang):
    rows = [json.loads(l) for l in open(DATA / f"humaneval_x_{lang}_dev.jsonl")]
    return [r["prompt"] + r["canonical_solution"] for r in rows]


def test_registry_has_every_paper_transform_with_its_polarity():
    assert set(names("positive")) == POSITIVE
    assert set(names("negative")) == NEGATIVE
    with pytest.raises(KeyError, match="known"):
        get_transform("flattery")


@pytest.mark.parametrize("name", sorted(POSITIVE | NEGATIVE))
def test_python_variants_compile_and_differ(name):
    t = ADV_TRANSFORMS[name]
    changed = 0
    for code in _python_programs():
        try:
            compile(code, "c", "exec")
        except SyntaxError:
            continue
        out = t(code, "python", random.Random(0))
        compile(out, name, "exec")
        changed += out != code
        assert t(code, "python", random.Random(0)) == out  # deterministic for a seed
    assert changed >= 50


@pytest.mark.parametrize("kind", sorted(STATEMENTS))
def test_statement_transforms_prepend_their_claim(kind):
    code = "def f(x):\n    return x + 1\n"
    out = ADV_TRANSFORMS[kind](code, "python", random.Random(3))
    first = out.splitlines()[0]
    assert first.startswith("# ") and first[2:] in STATEMENTS[kind]
    assert out.endswith(code)
    cpp = ADV_TRANSFORMS[kind]("int main(){return 0;}\n", "cpp", random.Random(3))
    assert cpp.startswith("// ")


def test_identifier_renaming_keeps_entry_point_and_keyword_names():
    code = ("def solve(nums, k=2):\n    total = 0\n    for n in nums:\n        total += n * k\n"
            "    return helper(total, scale=k)\n\ndef helper(v, scale):\n    msg = f'{v}'\n    return v * scale\n")
    out = ADV_TRANSFORMS["identifier_renaming"](code, "python", random.Random(0))
    tree = ast.parse(out)
    assert [f.name for f in tree.body] == ["solve", "helper"]
    assert "total" not in out and "nums" not in out  # locals and parameters renamed
    assert "scale" in out and "v}" in out  # keyword-argument and f-string names kept
    ns_a, ns_b = {}, {}
    exec(code, ns_a)
    exec(out, ns_b)
    assert ns_a["solve"]([1, 2, 3]) == ns_b["solve"]([1, 2, 3]) == 24


def test_misleading_comments_never_touch_strings():
    code = 'def f(s):\n    t = """a;\nb;"""\n    return s + t\n'
    out = ADV_TRANSFORMS["misleading_comments"](code, "python", random.Random(1))
    ns = {}
    exec(out, ns)
    assert ns["f"]("x") == "xa;\nb;" and "#" in out
    cpp = 'int f() {\n  const char* s = "x;\\n";\n  return 1;\n}\n'
    out = ADV_TRANSFORMS["misleading_comments"](cpp, "cpp", random.Random(1))
    assert '"x;\\n";' in out and "//" in out


def test_illusory_complexity_is_unreachable_inside_the_function():
    code = 'def f(x):\n    """doc"""\n    return x * 2\n'
    out = ADV_TRANSFORMS["illusory_complexity"](code, "python", random.Random(0))
    fn = ast.parse(out).body[0]
    assert isinstance(fn.body[1], ast.If) and fn.body[1].test.value is False
    ns = {}
    exec(out, ns)
    assert ns["f"](21) == 42


@pytest.mark.parametrize("lang", ["cpp", "java"])
def test_clike_lexer_round_trips_humaneval_x(lang):
    for prog in _x_programs(lang):
        assert "".join(t.text for t in tokenize(prog, lang)) == prog


@pytest.mark.parametrize("lang", ["cpp", "java"])
@pytest.mark.parametrize("name", sorted(POSITIVE | NEGATIVE))
def test_clike_transforms_apply_to_every_humaneval_x_program(lang, name):
    progs = _x_programs(lang)
    outs = [ADV_TRANSFORMS[name](p, lang, random.Random(0)) for p in progs]
    assert sum(o != p for o, p in zip(outs, progs)) >= len(progs) - 2
    for o in outs:  # still lexes: no unterminated string/comment introduced
        tokenize(o, lang)
