"""DAPO dynamic sampling (pure, no Ray): train only on prompt groups whose rewards differ.

A group whose samples all got the same reward has zero group-relative advantage: it adds no
gradient, only dilutes the batch. With ``algorithm.dynamic_sampling.enabled`` the controller drops
such groups and draws further rounds of ``prompts_per_step`` prompts (from the same, checkpointed
prompt sampler; each round generated with a seed of its own, ``round_key``) until
``prompts_per_step`` informative groups are collected, then trims to exactly that many (the first
ones, in round order) like DAPO. After ``max_extra_rounds`` extra rounds it trains on what it has;
with nothing (or fewer groups than batch_online's mini-batches) the step skips its update
(``actor/skipped_update``). ``fill_batch`` is that loop, given a callback that generates and scores
round k.

The step's ``reward/*`` metrics describe every generated sample of every round (what the policy
produced, not the filtered batch); ``dynamic_sampling/*`` say what was kept.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Callable, NamedTuple, Sequence

from aletheia_ray.metrics import reward_metrics
from aletheia_ray.rewards import SampleReward

if TYPE_CHECKING:  # keeps torch out of this module's imports
    from aletheia_ray.batch import Generation

# round k >= 1 of step s is generated as "step" s + k * ROUND_STRIDE (the controller's seed is a
# function of it): distinct from every step's first round while a run has fewer steps than this
ROUND_STRIDE = 1 << 24


def round_key(step: int, round_: int) -> int:
    """What generation round ``round_`` (0 = the step's own batch) of ``step`` passes to the
    controller's ``_generate`` as its step: its seed differs from every other round's and step's."""
    if round_ < 0 or not 0 <= step < ROUND_STRIDE:
        raise ValueError(f"round_key needs round >= 0 and 0 <= step < {ROUND_STRIDE}, got step {step}, round {round_}")
    return step + round_ * ROUND_STRIDE


def informative_groups(rewards: Sequence[float], group_ids: Sequence[int]) -> tuple[list[int], list[int]]:
    """(informative, zero-std) group ids, each in order of first appearance. A group is informative
    iff its rewards are not all equal (std > 0; a one-sample group never is). A reward that is None
    or not finite raises, naming the sample."""
    if len(rewards) != len(group_ids):
        raise ValueError(f"{len(rewards)} rewards but {len(group_ids)} group ids")
    values: dict[int, list[float]] = {}
    for i, (r, g) in enumerate(zip(rewards, group_ids)):
        if r is None or not math.isfinite(float(r)):
            raise ValueError(f"sample {i} (group {g}) has reward {r!r}; every sample needs a finite reward")
        values.setdefault(g, []).append(float(r))
    informative = [g for g, v in values.items() if any(x != v[0] for x in v)]
    return informative, [g for g, v in values.items() if all(x == v[0] for x in v)]


@dataclass
class ScoredRound:
    """One generation round: samples grouped by ``prompt_index`` (position in the round's prompts),
    rewards filled by the reward pool, which also filled ``meta`` and returned ``metrics``."""
    generations: list["Generation"]
    metrics: dict[str, float]
    gen_seconds: float


class FilledBatch(NamedTuple):
    kept: list["Generation"]  # the trained groups, prompt_index renumbered 0..kept_groups-1 (round order)
    generated: list["Generation"]  # every sample of every round (response metrics, tokens/s)
    gen_seconds: float  # generation time of all rounds
    metrics: dict[str, float]  # reward metrics of all rounds + dynamic_sampling/*


def merge_round_metrics(rounds: Sequence[ScoredRound]) -> dict[str, float]:
    """The reward pool's metrics over several rounds: ``reward/*`` recomputed over every sample
    (from the ``SampleReward`` the pool put into each sample's meta), every other key (sandbox
    counts, pool stats, times) summed."""
    if len(rounds) == 1:
        return dict(rounds[0].metrics)
    out: dict[str, float] = {}
    for r in rounds:
        for key, value in r.metrics.items():
            if not key.startswith("reward/"):
                out[key] = out.get(key, 0.0) + value
    names = [f.name for f in fields(SampleReward)]
    samples = []
    for g in (g for r in rounds for g in r.generations):
        missing = [n for n in names if n not in g.meta]
        if missing:
            raise ValueError(f"a sample of prompt {g.prompt_index} has no scored {missing} in its meta (not scored?)")
        samples.append(SampleReward(**{n: g.meta[n] for n in names}))
    out.update(reward_metrics(samples))
    return out


def fill_batch(first: ScoredRound, next_round: Callable[[int], ScoredRound], *, target_groups: int,
               max_extra_rounds: int, min_groups: int = 1) -> FilledBatch:
    """Collect ``target_groups`` informative groups: from ``first``, then from ``next_round(k)``
    for k = 1, 2, ... while short and k <= ``max_extra_rounds``; the first ``target_groups`` found
    are kept. Fewer than ``min_groups`` (batch_online: its mini-batches) keeps none."""
    if target_groups < 1 or max_extra_rounds < 0 or min_groups < 1:
        raise ValueError(f"need target_groups >= 1, max_extra_rounds >= 0, min_groups >= 1; got {target_groups}, "
                         f"{max_extra_rounds}, {min_groups}")
    rounds: list[ScoredRound] = []
    kept: list[list["Generation"]] = []
    dropped = informative_total = generated_prompts = 0

    def take(rnd: ScoredRound) -> None:
        nonlocal dropped, informative_total, generated_prompts
        rounds.append(rnd)
        members: dict[int, list["Generation"]] = {}
        for g in rnd.generations:
            members.setdefault(g.prompt_index, []).append(g)
        good, flat = informative_groups([g.reward for g in rnd.generations], [g.prompt_index for g in rnd.generations])
        generated_prompts += len(members)
        dropped += len(flat)
        informative_total += len(good)
        kept.extend(members[p] for p in good[:max(target_groups - len(kept), 0)])

    take(first)
    while len(kept) < target_groups and len(rounds) <= max_extra_rounds:
        take(next_round(len(rounds)))
    if len(kept) < min_groups:
        kept = []
    trained = [replace(g, prompt_index=k) for k, group in enumerate(kept) for g in group]
    metrics = merge_round_metrics(rounds)
    metrics.update({
        "dynamic_sampling/rounds": float(len(rounds)),
        "dynamic_sampling/generated_prompts": float(generated_prompts),
        "dynamic_sampling/dropped_groups": float(dropped),  # rewards all equal
        "dynamic_sampling/kept_groups": float(len(kept)),
        "dynamic_sampling/unused_groups": float(informative_total - len(kept)),  # beyond the batch, or too few
        "dynamic_sampling/filled": float(len(kept) == target_groups),
        "dynamic_sampling/frac_zero_std": dropped / generated_prompts if generated_prompts else 0.0,
    })
    return FilledBatch(trained, [g for r in rounds for g in r.generations], sum(r.gen_seconds for r in rounds), metrics)
