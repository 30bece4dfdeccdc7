"""``aletheia-testbed dpo``: preference pairs from sampled verifier outputs (paper Appendix A).

SAMPLES rows (JSONL): ``idx`` (a list of LISTS), ``model`` (who sampled it), ``completion`` (the
verifier's text; its letters refer to the candidates in the order stored in LISTS). Each sample is
scored with the ListEM verifiable reward: 1 = correct verdict, 0 = wrong letter, -1 = format
violation. Per list, up to ``pairs_per_list`` pairs (chosen = a correct sample, rejected = an
incorrect one, wrong letter or unparseable). Rejected samples are taken round-robin over the models
that produced them, starting at a rotating model, so rejected responses spread evenly across models;
chosen samples are cycled. Lists without a correct or without an incorrect sample give no pairs and
are counted in the summary; samples naming an unknown idx are errors.

Output rows: ``idx, list_idx, prompt_id, query, language, candidates, chosen_answer, chosen,
rejected, chosen_model, rejected_model, rejected_reward, rejected_reason``.
"""
from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

from aletheia_ray.data.lists import load_lists
from aletheia_ray.rewards import REWARD_FNS
from aletheia_ray.data.problems import read_jsonl


def load_samples(path: str | Path) -> list[dict]:
    rows = []
    for number, row in read_jsonl(path):
        where = f"{path}: line {number}"
        if not isinstance(row, dict):
            raise ValueError(f"{where}: not a JSON object")
        for key in ("idx", "model", "completion"):
            if not isinstance(row.get(key), (str, int)) or (key != "idx" and not isinstance(row[key], str)):
                raise ValueError(f"{where}: field {key!r} missing or not a string")
        rows.append({"idx": str(row["idx"]), "model": row["model"], "completion": row["completion"], "where": where})
    return rows


def build_dpo_pairs(lists_path: str | Path, samples_path: str | Path, out_path: str | Path,
                    pairs_per_list: int = 4, style: str = "think", seed: int = 0) -> dict:
    lists = {l.idx: l for l in load_lists(lists_path)}
    samples = load_samples(samples_path)
    unknown = [s["where"] for s in samples if s["idx"] not in lists]
    if unknown:
        raise ValueError(f"{len(unknown)} samples name an idx not in {lists_path}; first: {unknown[:3]}")
    reward = REWARD_FNS["list_em"]
    scored: dict[str, dict[str, list]] = defaultdict(lambda: {"correct": [], "rejected": defaultdict(list)})
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
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as f:
        for p in pairs:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    return {"pairs": len(pairs), "lists_with_samples": len(scored), "lists_without_samples": len(lists) - len(scored),
            "lists_without_correct": no_correct, "lists_without_rejected": no_rejected,
            "rejected_per_model": dict(sorted(per_model.items()))}
