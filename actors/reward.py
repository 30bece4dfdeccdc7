"""Reward actors: one interface for verdict rewards (verifier lists) and sandbox pass rates (code).

``RewardPool.score(generations, items)`` fills ``Generation.reward`` and ``Generation.meta`` for
every sample and returns the step's reward metrics; a recipe never cares which kind it runs:

* ``kind="verdict"``: ``items[prompt_index]`` is the ``VerifierList`` of that prompt (for pairwise
  rewards a ``(VerifierList, (i, j))`` tuple); the samples are split over ``num_actors``
  ``VerdictRewardActor``s, each applying ``REWARD_FNS[fn]`` (ListEM by default);
* ``kind="pass_rate"``: ``items[prompt_index]`` is a ``Submission`` template (tests, limits; its
  code is replaced by the completion's last fenced block) and the ``SandboxPool`` runs them.

Unparseable completions get the format penalty and are counted (``reward/num_unparseable``); for
``pass_rate`` the metrics also count what the sandbox executed, by status (``sandbox/*``), and the
pool's retries / restarts / time (``SandboxPool.stats``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence

import ray

from aletheia_ray.reward_scoring import (Overlong, SampleReward, sandbox_metrics, score_pass_rate, score_verdict,
                                         submission_for, summarize)
from aletheia_ray.rewards import PAIRWISE_REWARDS, get_reward_fn

if TYPE_CHECKING:  # keeps torch out of the reward actors' processes
    from aletheia_ray.batch import Generation

KINDS = ("verdict", "pass_rate")


@ray.remote
class VerdictRewardActor:
    """Scores completions against verifier lists with one reward function."""

    def __init__(self, fn: str, style: str, strict: bool, overlong: Optional[Overlong]):
        get_reward_fn(fn)  # fail at start-up on an unknown name
        self.fn, self.style, self.strict, self.overlong = fn, style, strict, overlong

    def score(self, jobs: list[tuple[str, Any, int]]) -> list[SampleReward]:
        """``jobs``: (completion, VerifierList or (VerifierList, pair), response length)."""
        out = []
        for text, item, length in jobs:
            lst, pair = item if isinstance(item, tuple) else (item, None)
            out.append(score_verdict(text, lst, fn=self.fn, style=self.style, strict=self.strict,
                                     response_length=length, overlong=self.overlong, pair=pair))
        return out


class RewardPool:
    """Driver-side handle; ``sandbox_pool`` (an ``actors.sandbox.SandboxPool``) for ``pass_rate``."""

    def __init__(self, *, kind: str = "verdict", fn: str = "list_em", style: str = "think", strict: bool = False,
                 num_actors: int = 1, num_cpus_per_actor: float = 0.1, overlong: Optional[Overlong] = None,
                 sandbox_pool: Any = None):
        if kind not in KINDS:
            raise ValueError(f"unknown reward kind {kind!r}; expected one of {KINDS}")
        if kind == "pass_rate" and sandbox_pool is None:
            raise ValueError("reward kind 'pass_rate' needs a sandbox_pool (actors.sandbox.SandboxPool)")
        if num_actors < 1:
            raise ValueError(f"reward num_actors must be >= 1, got {num_actors}")
        self.kind, self.fn, self.overlong, self.sandbox_pool = kind, fn, overlong, sandbox_pool
        self.pairwise = fn in PAIRWISE_REWARDS
        self._pool_stats: dict[str, float] = {}  # the sandbox pool's stats of the last pass-rate step
        self.actors = []
        if kind == "verdict":
            get_reward_fn(fn)
            self.actors = [VerdictRewardActor.options(num_cpus=num_cpus_per_actor, name=None).remote(
                fn, style, strict, overlong) for _ in range(num_actors)]

    def score(self, generations: Sequence["Generation"], items: Sequence[Any]) -> dict[str, float]:
        """Fill ``reward`` and ``meta`` of every generation; return the step's reward metrics."""
        for g in generations:
            if not 0 <= g.prompt_index < len(items):
                raise IndexError(f"generation for prompt {g.prompt_index} but only {len(items)} items were given")
        samples = self._score_verdicts(generations, items) if self.kind == "verdict" else \
            self._score_pass_rates(generations, items)
        for g, s in zip(generations, samples):
            g.reward = s.reward
            g.meta.update(s.to_meta())
        metrics = summarize(samples)
        if self.kind == "pass_rate":
            metrics.update(sandbox_metrics(samples))
            metrics.update(self._pool_stats)
        return metrics

    def _score_verdicts(self, generations, items) -> list[SampleReward]:
        jobs = [(g.text, items[g.prompt_index], len(g.response_ids)) for g in generations]
        chunk = -(-len(jobs) // len(self.actors))
        refs = [a.score.remote(jobs[i * chunk:(i + 1) * chunk]) for i, a in enumerate(self.actors)
                if jobs[i * chunk:(i + 1) * chunk]]
        return [s for part in ray.get(refs) for s in part]

    def _score_pass_rates(self, generations, items) -> list[SampleReward]:
        subs = [submission_for(g.text, items[g.prompt_index], f"p{g.prompt_index}-s{k}")
                for k, g in enumerate(generations)]
        runnable = [s for s in subs if s is not None]
        results = iter(self.sandbox_pool.score(runnable)) if runnable else iter(())
        self._pool_stats = dict(getattr(self.sandbox_pool, "stats", {})) if runnable else {"sandbox/submissions": 0.0}
        return [score_pass_rate(None if s is None else next(results), response_length=len(g.response_ids),
                                overlong=self.overlong) for s, g in zip(subs, generations)]

    def shutdown(self) -> None:
        for a in self.actors:
            ray.kill(a)
        self.actors = []
