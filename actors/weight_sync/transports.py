"""Driver side of weight sync: learner rank 0 -> every rollout engine, two transports.

* ``object_store`` (default on CPU): rank 0 packs buckets and ``ray.put``s each; every engine
  fetches them (zero-copy on CPU) and reloads in place.
* ``collective``: a private process group of rank 0 + every rollout worker (gloo on CPU, NCCL on
  GPU), created on first use; rank 0 broadcasts bucket after bucket.

One deadline (``timeout_s``) covers a whole sync; on expiry ``SyncTimeoutError`` names the
parties that did not answer (``"learner rank 0"``, ``"rollout engine 2"``). Engines are
one-call-at-a-time Ray actors, so a weight load never overlaps a generation; each engine resets
its prefix cache after loading. A failed sync leaves the engines' weights undefined: restart.
"""
from __future__ import annotations

import time
from typing import Any

import ray

from aletheia_ray.sync.buckets import total_bytes
from aletheia_ray.sync import TRANSPORTS
from aletheia_ray.sync.errors import SyncError, SyncTimeoutError

LEARNER = "learner rank 0"


def _engine_name(i: int) -> str:
    return f"rollout engine {i}"


def wait_named(futures: dict[str, Any], deadline: float, what: str) -> dict[str, Any]:
    """``ray.get`` named futures before ``deadline``; errors/timeouts name the parties."""
    refs = list(futures.values())
    remaining = max(0.0, deadline - time.monotonic())
    ready, pending = ray.wait(refs, num_returns=len(refs), timeout=remaining)
    ready_set = set(ready)
    results, failed = {}, []
    for name, ref in futures.items():
        if ref not in ready_set:
            continue
        try:
            results[name] = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - re-raised below with the party's name
            failed.append((name, exc))
    silent = [name for name, ref in futures.items() if ref not in ready_set]
    failure_note = "".join(f"; {name} failed: {_short(exc)}" for name, exc in failed)
    if silent:
        raise SyncTimeoutError(
            f"weight sync ({what}) timed out: no answer from {', '.join(silent)}{failure_note}",
            silent + [name for name, _ in failed],
        )
    if failed:
        raise SyncError(f"weight sync ({what}) failed{failure_note}", [n for n, _ in failed]) from failed[0][1]
    return results


def _short(exc: Exception, limit: int = 600) -> str:
    text = str(exc).strip().splitlines()
    text = text[-1] if text else type(exc).__name__
    return text[:limit]


class WeightSync:
    """``WeightSync(transport, bucket_mb, timeout_s).sync(learner_group, rollout_pool) -> metrics``.

    ``learner_group.ranks[0]`` must be an actor with ``WeightSenderMixin``; ``rollout_pool`` must
    expose ``.engines`` (``RolloutEngine`` actors) and ``.tensor_parallel_size``.
    """

    def __init__(self, transport: str = "object_store", bucket_mb: float = 64, timeout_s: float = 120,
                 backend: str = "gloo"):
        if transport not in TRANSPORTS:
            raise ValueError(f"weight sync transport must be one of {TRANSPORTS}, got {transport!r}")
        if bucket_mb <= 0 or timeout_s <= 0:
            raise ValueError(f"bucket_mb and timeout_s must be positive, got {bucket_mb}, {timeout_s}")
        self.transport = transport
        self.bucket_bytes = int(bucket_mb * 2**20)
        self.timeout_s = float(timeout_s)
        self.backend = backend
        self._group_key = None  # (sender, engines) the collective group was built for

    def sync(self, learner_group, rollout_pool) -> dict[str, float]:
        sender = learner_group.ranks[0]
        engines = list(rollout_pool.engines)
        start = time.perf_counter()
        deadline = time.monotonic() + self.timeout_s
        if self.transport == "object_store":
            specs = self._sync_object_store(sender, engines, deadline)
        else:
            specs = self._sync_collective(sender, engines, getattr(rollout_pool, "tensor_parallel_size", 1), deadline)
        elapsed = time.perf_counter() - start
        nbytes = total_bytes(specs)
        return {
            "timing_s/sync": elapsed,
            "sync/bytes": float(nbytes),
            "sync/buckets": float(len(specs)),
            "sync/mb_per_s": nbytes / 2**20 / max(elapsed, 1e-9),
        }

    def _sync_object_store(self, sender, engines, deadline):
        put = wait_named({LEARNER: sender.weight_sync_put_buckets.remote(self.bucket_bytes)},
                         deadline, "object_store: pack + put")
        specs, refs = put[LEARNER]
        wait_named({_engine_name(i): e.load_weights_from_object_refs.remote(specs, refs)
                    for i, e in enumerate(engines)}, deadline, "object_store: load")
        return specs

    def _sync_collective(self, sender, engines, tp, deadline):
        key = (sender._actor_id.hex(), tuple(e._actor_id.hex() for e in engines))
        if self._group_key != key:
            self._open_group(sender, engines, tp, deadline)
            self._group_key = key
        manifest = wait_named({LEARNER: sender.weight_sync_manifest.remote(self.bucket_bytes)},
                              deadline, "collective: manifest")
        specs = manifest[LEARNER]
        futures = {LEARNER: sender.weight_sync_broadcast.remote(specs, self.bucket_bytes)}
        futures.update({_engine_name(i): e.receive_weights_broadcast.remote(specs) for i, e in enumerate(engines)})
        try:
            wait_named(futures, deadline, f"collective/{self.backend}: broadcast")
        except SyncError:
            self._group_key = None  # the group's state is unknown: rebuild on the next sync
            raise
        return specs

    def _open_group(self, sender, engines, tp, deadline):
        world_size = 1 + len(engines) * tp
        opened = wait_named({LEARNER: sender.weight_sync_open_group.remote(world_size, self.backend, self.timeout_s)},
                            deadline, "collective: open group")
        host, port = opened[LEARNER]
        futures = {LEARNER: sender.weight_sync_join_group.remote()}
        futures.update({
            _engine_name(i): e.join_weight_sync_group.remote(host, port, world_size, 1 + i * tp, self.backend, self.timeout_s)
            for i, e in enumerate(engines)
        })
        wait_named(futures, deadline, f"collective/{self.backend}: join group")

    def close(self, learner_group=None, rollout_pool=None) -> None:
        """Forget the collective group (and tell the parties, when given) so the next sync rebuilds it."""
        self._group_key = None
        refs = []
        if learner_group is not None:
            refs.append(learner_group.ranks[0].weight_sync_close_group.remote())
        if rollout_pool is not None:
            refs += [e.close_weight_sync_group.remote() for e in rollout_pool.engines]
        if refs:
            ray.get(refs, timeout=self.timeout_s)
