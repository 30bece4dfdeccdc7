"""Reward actors: one interface for every task's reward (``aletheia_ray.rewards`` scorers).

``RewardPool.score(generations, items)`` fills ``Generation.reward`` and ``Generation.meta`` for
every sample and returns the step's reward metrics; the pool never knows which task it serves, only
what its scorer needs:

* a scorer that reads completions (``VerdictScorer``: verifier lists, pairs): the samples are split
  over ``num_actors`` ``RewardActor``s, each calling ``scorer.score(text, item, length)``;
* a scorer that runs code (``PassRateScorer.runs_code``: code generation): each completion becomes
  a sandbox ``Submission`` (``scorer.submission``) and the ``SandboxPool`` runs them.

Unparseable completions get the format penalty and are counted (``reward/num_unparseable``); for
code the metrics also count what the sandbox executed, by status (``sandbox/*``), and the pool's
retries / restarts / time (``SandboxPool.stats``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import ray

from aletheia_ray.actors.group import ActorGroup
from aletheia_ray.metrics import reward_metrics, sandbox_metrics
from aletheia_ray.rewards import SampleReward

if TYPE_CHECKING:  # keeps torch out of the reward actors' processes
    from aletheia_ray.batch import Generation


@ray.remote
class RewardActor:
    """Scores completions with the task's scorer."""

    def __init__(self, scorer: Any):
        self.scorer = scorer

    def score(self, jobs: list[tuple[str, Any, int]]) -> list[SampleReward]:
        """``jobs``: (completion, reward item, response length)."""
        return [self.scorer.score(text, item, length) for text, item, length in jobs]


class RewardPool:
    """Driver-side handle; ``sandbox_pool`` (an ``aletheia_ray.actors.sandbox.SandboxPool``) for a scorer that runs code."""

    def __init__(self, scorer: Any, *, num_actors: int = 1, num_cpus_per_actor: float = 0.1, sandbox_pool: Any = None):
        if scorer.runs_code and sandbox_pool is None:
            raise ValueError(f"{type(scorer).__name__} runs code: it needs a sandbox_pool "
                             "(aletheia_ray.actors.sandbox.SandboxPool)")
        if num_actors < 1:
            raise ValueError(f"reward num_actors must be >= 1, got {num_actors}")
        self.scorer, self.sandbox_pool = scorer, sandbox_pool
        self._pool_stats: dict[str, float] = {}  # the sandbox pool's stats of the last step
        self.group = ActorGroup("reward")
        self.actors = [] if scorer.runs_code else [
            self.group.launch(RewardActor, scorer, options={"num_cpus": num_cpus_per_actor}) for _ in range(num_actors)]

    def score(self, generations: Sequence["Generation"], items: Sequence[Any]) -> dict[str, float]:
        """Fill ``reward`` and ``meta`` of every generation; return the step's reward metrics."""
        for g in generations:
            if not 0 <= g.prompt_index < len(items):
                raise IndexError(f"generation for prompt {g.prompt_index} but only {len(items)} items were given")
        samples = self._run_code(generations, items) if self.scorer.runs_code else self._read(generations, items)
        for g, s in zip(generations, samples):
            g.reward = s.reward
            g.meta.update(s.to_meta())
        metrics = reward_metrics(samples)
        if self.scorer.runs_code:
            metrics.update(sandbox_metrics(samples))
            metrics.update(self._pool_stats)
        return metrics

    def _read(self, generations, items) -> list[SampleReward]:
        from aletheia_ray.micro_batches import near_equal_bounds  # driver side: torch stays out of the actors

        jobs = [(g.text, items[g.prompt_index], len(g.response_ids)) for g in generations]
        refs = [a.score.remote(jobs[start:end])
                for a, (start, end) in zip(self.actors, near_equal_bounds(len(jobs), len(self.actors))) if end > start]
        return [s for part in ray.get(refs) for s in part]

    def _run_code(self, generations, items) -> list[SampleReward]:
        subs = [self.scorer.submission(g.text, items[g.prompt_index], f"p{g.prompt_index}-s{k}")
                for k, g in enumerate(generations)]
        runnable = [s for s in subs if s is not None]
        results = iter(self.sandbox_pool.score(runnable)) if runnable else iter(())
        self._pool_stats = dict(getattr(self.sandbox_pool, "stats", {})) if runnable else {"sandbox/submissions": 0.0}
        return [self.scorer.score(None if s is None else next(results), len(g.response_ids))
                for s, g in zip(subs, generations)]

    def shutdown(self) -> None:
        self.group.shutdown()
        self.actors = []
