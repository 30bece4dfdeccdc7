"""Aletheia-DPO data (paper Appendix A): sampled verifier outputs -> preference pairs. No Ray here.

A SAMPLE row is ``{idx, model, completion}``: ``idx`` names a verifier list, ``model`` who sampled
it, ``completion`` the verifier's text (its letters refer to the candidates in the list's stored
order). Each sample is scored with the ListEM verifiable reward: 1 = correct verdict, 0 = wrong
letter, -1 = format violation. Per list, up to ``pairs_per_list`` pairs: chosen = a correct (hence
well-formed) sample, rejected = an incorrect one (wrong letter or unparseable). Rejected samples are
taken round-robin over the models that produced them, starting at a rotating model, so rejected
responses spread evenly across models; chosen samples are cycled. Lists without a correct or
without an incorrect sample give no pairs and are counted in the summary.

The trainer (``actors/preference_trainer.py``) writes its samples in this layout and pairs them
with ``make_pairs``; ``aletheia-testbed dpo`` does the same from files, so either can feed the other.
A PAIR row: ``idx, list_idx, prompt_id, query, language, candidates, chosen_answer, chosen, rejected,
chosen_model, rejected_model, rejected_reward, rejected_reason`` and, once the reference has scored
them, ``ref_chosen_logp`` / ``ref_rejected_logp`` (sums of the reference's logprobs over each
response's tokens: the paper's precomputed reference logprobs).
"""
from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from aletheia_ray.data.problems import read_jsonl
from aletheia_ray.data.records import VerifierList
from aletheia_ray.rewards import REWARD_FNS

SAMPLE_KEYS = ("idx", "model", "completion")
PAIR_KEYS = ("list_idx", "chosen", "rejected")
REF_KEYS = ("ref_chosen_logp", "ref_rejected_logp")


def _json_objects(path: str | Path) -> Iterator[tuple[str, dict]]:
    """(``"<path>: line N"``, row) per JSON object of a JSONL file; any other value is an error naming its line."""
    for number, row in read_jsonl(path):
        where = f"{path}: line {number}"
        if not isinstance(row, dict):
            raise ValueError(f"{where}: not a JSON object")
        yield where, row


def load_samples(path: str | Path) -> list[dict]:
    """SAMPLE rows of a JSONL file; a row without a string ``model``/``completion`` or an ``idx`` is
    an error naming its line."""
    rows = []
    for where, row in _json_objects(path):
        for key in SAMPLE_KEYS:
            if not isinstance(row.get(key), (str, int)) or (key != "idx" and not isinstance(row[key], str)):
                raise ValueError(f"{where}: field {key!r} missing or not a string")
        rows.append({"idx": str(row["idx"]), "model": row["model"], "completion": row["completion"], "where": where})
    return rows


def make_pairs(lists: Mapping[str, VerifierList], samples: Sequence[dict], *, pairs_per_list: int = 4,
               style: str = "think", seed: int = 0) -> tuple[list[dict], dict[str, Any]]:
    """(PAIR rows, summary) from SAMPLE rows of the given lists (see the module docstring)."""
    if pairs_per_list < 1:
        raise ValueError(f"pairs_per_list must be >= 1, got {pairs_per_list}")
    unknown = [s.get("where", s["idx"]) for s in samples if s["idx"] not in lists]
    if unknown:
        raise ValueError(f"{len(unknown)} samples name a list idx that is not in the lists; first: {unknown[:3]}")
    reward = REWARD_FNS["list_em"]
    scored: dict[str, dict[str, Any]] = defaultdict(lambda: {"correct": [], "rejected": defaultdict(list)})
    for s in samples:
        res = reward(s["completion"], lists[s["idx"]], style=style)
        if res.reward == 1.0:
            scored[s["idx"]]["correct"].append(s)
        else:
            scored[s["idx"]]["rejected"][s["model"]].append({**s, "reward": res.reward, "reason": res.reason})
    rng = random.Random(f"{seed}:dpo")
    pairs, no_correct, no_rejected, rotation = [], [], [], 0
    per_model: dict[str, int] = defaultdict(int)
    for idx in sorted(scored):
        group = scored[idx]
        if not group["correct"]:
            no_correct.append(idx)
            continue
        if not group["rejected"]:
            no_rejected.append(idx)
            continue
        models = sorted(group["rejected"])
        queues = {m: rng.sample(group["rejected"][m], len(group["rejected"][m])) for m in models}
        chosen = rng.sample(group["correct"], len(group["correct"]))
        rejected, k = [], rotation
        while len(rejected) < pairs_per_list and any(queues.values()):
            m = models[k % len(models)]
            if queues[m]:
                rejected.append(queues[m].pop())
            k += 1
        rotation += 1
        lst = lists[idx]
        for n, rej in enumerate(rejected):
            ch = chosen[n % len(chosen)]
            per_model[rej["model"]] += 1
            pairs.append({"idx": f"{idx}-dpo{n}", "list_idx": idx, "prompt_id": lst.prompt_id, "query": lst.query,
                          "language": lst.language, "candidates": lst.candidates, "chosen_answer": lst.chosen_answer,
                          "chosen": ch["completion"], "rejected": rej["completion"], "chosen_model": ch["model"],
                          "rejected_model": rej["model"], "rejected_reward": rej["reward"],
                          "rejected_reason": rej["reason"]})
    summary = {"pairs": len(pairs), "samples": len(samples), "lists_with_samples": len(scored),
               "lists_without_samples": len(lists) - len(scored), "lists_without_correct": no_correct,
               "lists_without_rejected": no_rejected, "rejected_per_model": dict(sorted(per_model.items()))}
    return pairs, summary


def write_jsonl(rows: Sequence[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({k: v for k, v in row.items() if k != "where"}, ensure_ascii=False) + "\n")
    return path


def load_pairs(path: str | Path, *, need_reference: bool = False) -> list[dict]:
    """PAIR rows; a row missing ``list_idx``/``chosen``/``rejected`` (or, with ``need_reference``,
    a finite ``ref_chosen_logp``/``ref_rejected_logp``) is an error naming its line."""
    rows = []
    for where, row in _json_objects(path):
        for key in PAIR_KEYS:
            if not isinstance(row.get(key), str) or not row[key]:
                raise ValueError(f"{where}: field {key!r} missing or not a non-empty string")
        for key in REF_KEYS if need_reference else ():
            value = row.get(key)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{where}: field {key!r} missing or not a finite number")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no preference pairs")
    return rows


def has_reference_logprobs(pairs: Sequence[dict]) -> bool:
    return all(isinstance(p.get(k), (int, float)) for p in pairs for k in REF_KEYS)


def chosen_responses(pairs: Sequence[dict]) -> list[tuple[str, str]]:
    """The SFT baseline's data: each distinct (list idx, chosen response) of the pairs, in order."""
    seen, out = set(), []
    for p in pairs:
        key = (p["list_idx"], p["chosen"])
        if key not in seen:
            seen.add(key)
            out.append(key)
    return out
