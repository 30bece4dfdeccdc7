"""stats.md: the paper's Table 2 columns per split, plus bucket sizes and balance."""
from __future__ import annotations

from collections import Counter
from typing import Callable, Optional

from tqdm import tqdm

from aletheia_ray.data.records import VerifierList
from aletheia_ray.testbed.similarity import within_list_similarity

SPLIT_ORDER = ("train", "heldout", "strong", "hard", "adv")


def split_stats(lists: list[VerifierList], tokenize: Callable[[str], list], desc: str) -> dict:
    if not lists:
        return {"rows": 0, "questions": 0, "mean_tokens": None, "mean_similarity": None}
    lengths, sims = [], []
    for lst in tqdm(lists, desc=f"stats {desc}", leave=False):
        toks = [tokenize(c) for c in lst.candidates]
        lengths.extend(len(t) for t in toks)
        sims.append(within_list_similarity(toks))
    return {
        "rows": len(lists), "questions": len({l.prompt_id for l in lists}),
        "mean_tokens": round(sum(lengths) / len(lengths), 1), "mean_similarity": round(sum(sims) / len(sims), 3),
        "lengths": dict(sorted(Counter(l.num_candidates for l in lists).items())),
        "languages": dict(sorted(Counter(l.language for l in lists).items())),
    }


def _fmt(v) -> str:
    return "-" if v is None else str(v)


def render_stats(stats: dict[str, dict], buckets: dict[str, dict], contamination: dict[str, list],
                 similarity_note: str, verification: Optional[dict] = None) -> str:
    lines = ["# Testbed statistics", "",
             "| split | #rows | #questions | mean code length (tokens) | mean within-list similarity | lists by length | languages |",
             "|---|---|---|---|---|---|---|"]
    for name in SPLIT_ORDER:
        if name not in stats:
            continue
        s = stats[name]
        lengths = ", ".join(f"{k}:{v}" for k, v in s.get("lengths", {}).items()) or "-"
        langs = ", ".join(f"{k}:{v}" for k, v in s.get("languages", {}).items()) or "-"
        lines.append(f"| {name} | {s['rows']} | {s['questions']} | {_fmt(s['mean_tokens'])} | "
                     f"{_fmt(s['mean_similarity'])} | {lengths} | {langs} |")
    lines += ["", "## Buckets before splitting (all problems)", "",
              "| tier | bucket | #lists | #questions |", "|---|---|---|---|"]
    for key, b in sorted(buckets.items()):
        tier, bucket = key.split("/")
        lines.append(f"| {tier} | {bucket} | {b['lists']} | {b['questions']} |")
    shared = {k: v for k, v in contamination.items() if v}
    lines += ["", "## Contamination check", "",
              "No problem id appears in both Train and an evaluation split." if not shared
              else f"PROBLEM IDS SHARED WITH TRAIN: {shared}", ""]
    per = (verification or {}).get("per_transform") or {}
    lines += ["## Adversarial verification in the sandbox", ""]
    if per:
        lines += [f"{verification['same_pass_rate']}/{verification['programs']} modified programs keep "
                  f"the original's pass rate.", "",
                  "| transform/language | #programs | same pass rate | infra errors |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['programs']} | {v['same_pass_rate']} | {v['infra_errors']} |" for k, v in per.items()]
    else:
        lines.append("Not run (adversarial.verify_sample = verify_per_transform = 0, or no Adv lists).")
    lines += ["", "## Measures", "", similarity_note, ""]
    return "\n".join(lines)
