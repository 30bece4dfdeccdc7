"""Peak memory of every actor, polled without stalling the loop (``memory/<actor>/peak_rss_gb``,
+ ``peak_gpu_allocated_gb`` on GPU): what was asked at the end of one step is read at the end of
the next, so an engine already generating the next batch answers late instead of stalling the
controller. ``collect(final=True)`` (end of run, every actor idle) asks everyone and waits."""
from __future__ import annotations

import logging
from typing import Any, Callable

import ray

from aletheia_ray.memory_options import peak_memory_gb

log = logging.getLogger("aletheia_ray.actors.memory_poll")


class PeakMemoryPoll:
    def __init__(self, actors: Callable[[], dict[str, Any]]):
        """``actors()``: name -> actor handle with a ``peak_memory`` method (asked anew each poll)."""
        self.actors = actors
        self.pending: dict[str, Any] = {}  # actor name -> ObjectRef of its peak_memory()

    def collect(self, final: bool = False) -> dict[str, float]:
        out = {f"memory/controller/{k}": v for k, v in peak_memory_gb().items()}
        asks = {name: actor.peak_memory.remote() for name, actor in self.actors().items()}
        pending, self.pending = (asks, {}) if final else (self.pending, {})
        ready, _ = ray.wait(list(pending.values()), num_returns=len(pending), timeout=60 if final else 0)
        for name, ref in pending.items():
            if ref not in ready:
                self.pending[name] = ref
                continue
            try:
                out.update({f"memory/{name}/{k}": v for k, v in ray.get(ref).items()})
            except Exception as exc:  # noqa: BLE001 - a dead actor's memory is not worth the run's metrics
                log.warning("peak memory of %s not collected: %s", name, exc)
        if not final:
            for name, ref in asks.items():
                self.pending.setdefault(name, ref)
        return out
