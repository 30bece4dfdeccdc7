"""List construction (paper Sec. 3): one generator per list, 2-5 candidates, exactly one correct.

Per (problem, generator, language) group: duplicate programs are merged; wrong programs are
grouped by pass rate (rounded to 6 decimals), so a list never holds two equal pass rates. A bucket
takes wrong pass rates inside its range (Easy [0, 0.5], Hard [0.7, 0.9] by default, inclusive).
For each configured length L with at least L-1 distinct wrong rates, up to ``lists_per_length``
distinct rate combinations are drawn; each list takes one random program per rate plus one random
correct program, in shuffled order; ``chosen_position`` / ``chosen_answer`` follow the shuffle.
Tiers come from the generator -> tier map.
"""
from __future__ import annotations

import math
import random
from collections import defaultdict
from itertools import combinations

from aletheia_ray.data.records import LETTERS, VerifierList
from aletheia_ray.testbed.candidates import Candidate
from aletheia_ray.testbed.config import GeneratorsConfig, ListsConfig
from aletheia_ray.data.problems import Problem
from aletheia_ray.data.report import BuildReport

BUCKETS = ("easy", "hard")
RATE_DECIMALS = 6
MAX_ENUMERATE = 20_000


def tier_of(generator: str, cfg: GeneratorsConfig) -> str | None:
    return cfg.tiers.get(generator, cfg.default_tier)


def _sample_combos(rates: list[float], k: int, count: int, rng: random.Random) -> list[tuple[float, ...]]:
    total = math.comb(len(rates), k)
    if total <= MAX_ENUMERATE:
        combos = list(combinations(rates, k))
        return rng.sample(combos, min(count, len(combos)))
    seen: dict[tuple, None] = {}
    while len(seen) < count:
        seen[tuple(sorted(rng.sample(rates, k)))] = None
    return list(seen)


def _group_lists(problem: Problem, generator: str, language: str, tier: str, cands: list[Candidate],
                 cfg: ListsConfig, seed: int, source: str, report: BuildReport) -> list[VerifierList]:
    codes: dict[str, float] = {}
    for c in sorted(cands, key=lambda c: c.code):
        if c.code in codes and codes[c.code] != c.pass_rate:
            report.add("conflicting_pass_rate", c.where, f"problem {c.problem_id}: same code seen with pass "
                       f"rates {codes[c.code]} and {c.pass_rate}; the first is kept")
            continue
        if cfg.max_code_chars is None or len(c.code) <= cfg.max_code_chars:
            codes.setdefault(c.code, c.pass_rate)
    correct = sorted(code for code, r in codes.items() if r >= 1.0)
    by_rate: dict[float, list[str]] = defaultdict(list)  # rounded rate -> programs
    exact: dict[float, float] = {}  # rounded rate -> the smallest exact rate behind it (written out)
    for code, r in sorted(codes.items()):
        if r < 1.0:
            key = round(r, RATE_DECIMALS)
            by_rate[key].append(code)
            exact[key] = min(exact.get(key, r), r)
    if not correct:
        return []
    out: list[VerifierList] = []
    rng = random.Random(f"{seed}:lists:{problem.problem_id}:{generator}:{language}")
    for bucket in BUCKETS:
        lo, hi = cfg.easy_range if bucket == "easy" else cfg.hard_range
        rates = sorted(r for r in by_rate if lo <= r <= hi)
        for length in sorted(set(cfg.lengths)):
            if len(rates) < length - 1:
                continue
            for j, combo in enumerate(_sample_combos(rates, length - 1, cfg.lists_per_length, rng)):
                items = [(rng.choice(correct), 1.0)] + [(rng.choice(by_rate[r]), exact[r]) for r in combo]
                rng.shuffle(items)
                pos = [r for _, r in items].index(1.0)
                out.append(VerifierList(
                    idx=f"{problem.problem_id}|{generator}|{language}|{bucket}|{length}|{j}",
                    query=problem.query, candidates=[c for c, _ in items], pass_rates=[r for _, r in items],
                    chosen_position=pos, chosen_answer=LETTERS[pos], language=language,
                    prompt_id=problem.problem_id, generator=generator, num_candidates=length,
                    easy_hard=bucket, weak_strong=tier, source=source or problem.source,
                ))
    return out


def build_lists(cands: list[Candidate], problems: dict[str, Problem], lists_cfg: ListsConfig,
                gen_cfg: GeneratorsConfig, seed: int, source: str, report: BuildReport) -> list[VerifierList]:
    """All candidate lists of every bucket and tier, in a deterministic order."""
    groups: dict[tuple[str, str, str], list[Candidate]] = defaultdict(list)
    for c in cands:
        groups[(c.problem_id, c.generator, c.language)].append(c)
    unknown = sorted({g for _, g, _ in groups if tier_of(g, gen_cfg) is None})
    for g in unknown:
        report.add("generator_without_tier", g, "generator missing from generators.tiers and no "
                   "generators.default_tier; its candidates are not used")
    out: list[VerifierList] = []
    for (pid, gen, lang) in sorted(groups):
        tier = tier_of(gen, gen_cfg)
        if tier is None:
            continue
        group = groups[(pid, gen, lang)]
        lists = _group_lists(problems[pid], gen, lang, tier, group, lists_cfg, seed, source, report)
        if not any(c.pass_rate >= 1.0 for c in group):
            report.add("no_correct_candidate", f"{pid}|{gen}|{lang}", f"none of {len(group)} programs passes every test")
        elif not lists:
            report.add("no_lists", f"{pid}|{gen}|{lang}", "too few distinct wrong pass rates inside the "
                       "easy and hard ranges for the shortest configured list length")
        out.extend(lists)
    return out
