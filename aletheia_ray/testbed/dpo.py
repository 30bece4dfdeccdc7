"""``aletheia-testbed dpo``: preference pairs from sampled verifier outputs (paper Appendix A).

The files' layouts and the pairing rule are ``aletheia_ray.preference``'s (SAMPLE rows in, PAIR
rows out): the same code pairs the samples ``aletheia-train`` generates for DPO-Think, which it
writes to ``<output_dir>/preference/samples.jsonl``, so this command reproduces its pairs.
"""
from __future__ import annotations

from pathlib import Path

from aletheia_ray.data.lists import load_lists
from aletheia_ray.preference import load_samples, make_pairs, write_jsonl


def build_dpo_pairs(lists_path: str | Path, samples_path: str | Path, out_path: str | Path,
                    pairs_per_list: int = 4, style: str = "think", seed: int = 0) -> dict:
    lists = {l.idx: l for l in load_lists(lists_path)}
    pairs, summary = make_pairs(lists, load_samples(samples_path), pairs_per_list=pairs_per_list, style=style,
                                seed=seed)
    write_jsonl(pairs, out_path)
    return summary
