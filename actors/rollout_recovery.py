"""Dead rollout engines: replace one and re-send its prompts, or stop naming it.

An engine whose process died (``ray.kill``, SIGKILL, the OOM killer, a lost node: Ray fails its
calls with ``RayActorError``) is handled per ``rollout.on_engine_failure``:

* ``restart`` (default): ``RolloutPool.relaunch_engine`` starts a new engine in the dead one's
  placement-group bundle, the pool's ``weight_loader`` loads the current policy weights into it,
  and the prompts it was generating are sent again with the same sample seeds. Seeds derive from
  (seed, prompt index), not from the engine, so the re-sent samples are the ones the dead engine
  would have returned for the same weights: no sample is lost or counted twice. At most
  ``rollout.max_engine_restarts`` replacements over the pool's life; the next death stops.
* ``stop``: raise ``EngineFailedError`` naming the engine.

Only a dead process counts: an exception raised inside a live engine (a vLLM error) is re-raised
as it is. A death found by a weight sync (``sync_with_recovery``) is handled the same way, then the
whole sync is redone, so every engine (the new one too) holds the learner's weights; with the
collective transport the new engine's actor id changes the group key, so ``WeightSync`` builds a
new group of rank 0 + every engine.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from aletheia_ray.batch import Generation

log = logging.getLogger("aletheia_ray.actors.rollout")
POLICIES = ("restart", "stop")


class EngineFailedError(RuntimeError):
    """A rollout engine died and was not (or could not be) replaced; ``engine`` is its index."""

    def __init__(self, message: str, engine: int):
        super().__init__(message)
        self.engine = engine


def engine_died(exc: BaseException) -> bool:
    """The engine's process is gone (not: the engine raised an error of its own)."""
    return isinstance(exc, RayActorError) and not isinstance(exc, RayTaskError)


def _short(exc: BaseException, limit: int = 300) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:limit]


class EngineRecovery:
    """The restart policy and count of one pool."""

    def __init__(self, policy: str = "restart", max_restarts: int = 3):
        if policy not in POLICIES:
            raise ValueError(f"rollout.on_engine_failure must be one of {POLICIES}, got {policy!r}")
        if max_restarts < 0:
            raise ValueError(f"rollout.max_engine_restarts must be >= 0, got {max_restarts}")
        self.policy, self.max_restarts = policy, max_restarts
        self.restarts = 0
        self.events: list[dict[str, Any]] = []  # one per replacement: engine, during, old/new pid, seconds

    def replace(self, pool, index: int, during: str, cause: BaseException, *, load_weights: bool = True) -> None:
        """Replace dead engine ``index`` of ``pool`` (and load the current weights), or raise
        ``EngineFailedError`` naming it; ``during``: when it was found dead ("during generate")."""
        what = f"rollout engine {index}"
        if self.policy == "stop":
            raise EngineFailedError(f"{what} died {during} ({_short(cause)}); "
                                    "rollout.on_engine_failure=stop", index) from cause
        if self.restarts >= self.max_restarts:
            raise EngineFailedError(f"{what} died {during} ({_short(cause)}); no restart left: "
                                    f"rollout.max_engine_restarts={self.max_restarts} used up", index) from cause
        self.restarts += 1
        log.warning("%s died %s (%s): restarting it (restart %d of rollout.max_engine_restarts=%d)",
                    what, during, _short(cause), self.restarts, self.max_restarts)
        old_pid = (pool.engine_info[index] or {}).get("pid")
        start = time.perf_counter()
        try:
            info = pool.relaunch_engine(index)
            if load_weights and pool.weight_loader is not None:
                pool.weight_loader([index])
        except Exception as exc:
            raise EngineFailedError(f"{what} died {during} ({_short(cause)}) and its replacement "
                                    f"failed: {_short(exc)}", index) from exc
        seconds = time.perf_counter() - start
        self.events.append({"engine": index, "during": during, "old_pid": old_pid, "new_pid": info.get("pid"),
                            "seconds": seconds})
        log.warning("%s restarted in %.1fs (pid %s -> %s)%s", what, seconds, old_pid, info.get("pid"),
                    " with the current weights" if load_weights and pool.weight_loader is not None else "")


def generate_with_recovery(pool, shards: list[tuple[int, list[list[int]], list[int]]],
                           kwargs: dict[str, Any]) -> list[Generation]:
    """Run ``(engine index, prompt ids, prompt indices)`` shards on their engines; a shard whose engine
    died is sent again, unchanged, to its replacement. Returns the generations in shard order."""
    def submit(shard):
        i, ids, idx = shard
        return pool.engines[i].generate.remote(ids, idx, **kwargs)

    futures = {submit(shard): shard for shard in shards}
    results: dict[int, list[Generation]] = {}
    while futures:
        ready, _ = ray.wait(list(futures), num_returns=1)
        shard = futures.pop(ready[0])
        try:
            results[shard[0]] = ray.get(ready[0])
        except Exception as exc:
            if not engine_died(exc):
                raise
            pool.recovery.replace(pool, shard[0], "during generate", exc)
            futures[submit(shard)] = shard
    return [g for i, _, _ in shards for g in results[i]]


def dead_engines(pool, indices, timeout_s: float = 30) -> list[int]:
    """Those of ``indices`` whose engine process is gone (their ``info()`` fails with RayActorError);
    one call per engine, all at once (an idle engine answers in milliseconds)."""
    refs = {i: pool.engines[i].info.remote() for i in indices}
    ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s)
    dead = []
    for i, ref in refs.items():
        try:
            ray.get(ref, timeout=0)
        except Exception as exc:  # noqa: BLE001 - only a dead actor counts, anything else is not ours
            if engine_died(exc):
                dead.append(i)
    return dead


def sync_with_recovery(weight_sync, learner, pool) -> dict[str, float]:
    """``weight_sync.sync(learner, pool)`` with dead engines replaced (``pool.recovery``) first: those
    that died since the last call are found by asking every engine (a collective broadcast would
    otherwise wait ``sync.timeout_s`` for them); if the sync fails because engines died during it,
    they are replaced and every engine is synced again. A failure of the learner or of a live
    engine is re-raised as it is. The replacements get their weights from the sync itself."""
    from aletheia_ray.sync.errors import SyncError

    retried = 0.0
    for i in dead_engines(pool, range(len(pool.engines))):
        pool.recovery.replace(pool, i, "before a weight sync", _DeadBeforeSync(i), load_weights=False)
    try:
        metrics = weight_sync.sync(learner, pool)
    except SyncError as exc:
        named = [int(p.rsplit(" ", 1)[1]) for p in exc.parties if p.startswith("rollout engine ")]
        dead = dead_engines(pool, named)
        if not dead:
            raise
        for i in dead:
            pool.recovery.replace(pool, i, "during weight sync", exc, load_weights=False)
        metrics, retried = weight_sync.sync(learner, pool), 1.0
    metrics["sync/retried"] = retried
    return metrics


class _DeadBeforeSync(RuntimeError):
    def __init__(self, index: int):
        super().__init__(f"rollout engine {index} did not answer before the weight sync: its actor is dead")
