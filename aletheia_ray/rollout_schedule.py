"""Which generated batch each RL step trains on, and when it is generated (no Ray here).

With ``max_staleness`` 0 a step's batch is generated at the start of the step, from weights that
include every update so far. With 1 (async_tis) the next step's batch is generated in the
background while this step trains, from the weights of before this step's update; the
controller calls ``wait_for_next`` before loading new weights into the engines, so generation
and weight loading never overlap. ``weights_version`` counts the RL updates the rollout weights
held when a batch's generation started; a step's staleness is the learner's update count minus it.
"""
from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Optional

from aletheia_ray.batch import Generation
from aletheia_ray.sampler import PromptSampler

log = logging.getLogger(__name__)
Generate = Callable[[int, list[int]], tuple[list[Generation], float]]  # (step, prompts) -> (gens, seconds)


@dataclass
class ScheduledBatch:
    step: int
    prompt_indices: list[int]
    epoch: int  # sampler epoch of these prompts
    weights_version: int
    future: Optional[Future]  # -> (generations, generation seconds); None: prompts drawn, not generated yet

    def result(self) -> tuple[list[Generation], float]:
        return self.future.result()


class RolloutSchedule:
    def __init__(self, generate: Generate, sampler: PromptSampler, *, max_staleness: int, total_steps: int):
        if max_staleness not in (0, 1):
            raise ValueError(f"max_staleness must be 0 or 1, got {max_staleness}")
        self._generate, self._sampler = generate, sampler
        self.max_staleness, self.total_steps = max_staleness, total_steps
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="rollout-generate")
        self._next: Optional[ScheduledBatch] = None
        self.weights_version = 0  # RL updates in the rollout engines' weights now

    def _start(self, step: int, drawn: Optional[ScheduledBatch] = None) -> ScheduledBatch:
        """Generate step ``step``'s batch from the current weights (for prompts already drawn, or new ones)."""
        idx, epoch = (drawn.prompt_indices, drawn.epoch) if drawn else (self._sampler.next_batch(), self._sampler.epoch)
        return ScheduledBatch(step, idx, epoch, self.weights_version, self._pool.submit(self._generate, step, idx))

    def batch_for(self, step: int) -> ScheduledBatch:
        """Step ``step``'s batch (already started, or started now); with staleness 1 also start
        the next step's, to run while this one trains."""
        current = self._next if self._next is not None and self._next.step == step else None
        if current is None or current.future is None:
            current = self._start(step, current)
        self._next = None
        if self.max_staleness and step < self.total_steps:
            self._next = self._start(step + 1)
        return current

    def wait_for_next(self) -> None:
        """Block until the background generation (if any) is done: call before loading weights."""
        if self._next is not None:
            self._next.result()

    def weights_loaded(self, updates: int) -> None:
        self.weights_version = updates

    def pending(self) -> Optional[dict[str, Any]]:
        """The already generated next batch, for a checkpoint (None when there is none)."""
        if self._next is None:
            return None
        gens, seconds = self._next.result()
        return {"step": self._next.step, "prompt_indices": self._next.prompt_indices, "epoch": self._next.epoch,
                "weights_version": self._next.weights_version, "gen_seconds": seconds, "generations": gens}

    def restore(self, pending: Optional[dict[str, Any]], weights_version: int) -> None:
        """After a resume: the engines hold the learner's weights; the pending batch is reused."""
        self.weights_version = weights_version
        self._next = None
        if pending is not None and not self.max_staleness:
            log.warning("checkpoint holds a batch generated ahead (async_tis) but this run is on-policy: "
                        "step %d regenerates its prompts from the current weights", pending["step"])
            self._next = ScheduledBatch(pending["step"], pending["prompt_indices"], pending["epoch"],
                                        weights_version, None)
        elif pending is not None:
            done: Future = Future()
            done.set_result((pending["generations"], pending["gen_seconds"]))
            self._next = ScheduledBatch(pending["step"], pending["prompt_indices"], pending["epoch"],
                                        pending["weights_version"], done)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)  # a running one fails once the engines are gone
