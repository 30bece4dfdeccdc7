"""Ray pool of sandbox actors: pass rates for many submissions, load-balanced and fault tolerant.

``SandboxActor`` is a thin shell over one local ``Executor`` (its own ``slot``: a distinct non-root
uid and cgroup) or over the SandboxFusion client. ``SandboxPool.score(subs)`` returns one result per
submission, in input order, exactly once:

* load balancing: at most ``inflight_per_actor`` tasks queued on each actor; the next submission
  goes to the least-loaded live actor as soon as ``ray.wait`` reports a finished one;
* per-submission timeout: the clock of a task starts when it reaches the head of its actor's queue
  (an actor runs its tasks one at a time, in submission order); on expiry the actor is killed and
  restarted, the queued work behind it is re-dispatched, the expired submission counts one attempt;
* retries: an ``InfraError`` result, a timeout, or work lost to a dead actor (``RayActorError`` /
  ``ActorDiedError``: the actor is restarted with the same slot) is re-dispatched up to
  ``max_retries`` times; after that the InfraError result (``pass_rate=None``) is returned, never a
  silent 0.

Placement: each actor asks for ``num_cpus_per_actor`` (fractional). With ``spread=True`` (default)
actors use Ray's ``SPREAD`` scheduling strategy, so on a cluster ``num_actors = total CPU slots``
spreads one actor per slot over the nodes (slots = ``cluster CPUs / num_cpus_per_actor``; see
``actors_for_cluster``). Actor ``i`` owns sandbox slot ``slot_offset + i`` (a uid/cgroup), so two
actors never share one on a host; pick ``slot_offset`` so that other local executors on the same
host (e.g. a testbed thread pool using slots 0..N-1) do not collide. A restarted actor keeps its slot.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import ray
from ray.exceptions import GetTimeoutError, RayError, RayTaskError
from tqdm import tqdm

from aletheia_ray.actors.group import ActorGroup
from aletheia_ray.sandbox.types import SANDBOX_BACKENDS, Status, Submission, SubmissionResult, TestResult

log = logging.getLogger(__name__)

ACTOR_START_TIMEOUT_S = 120.0


@ray.remote
class SandboxActor:
    """One sandbox slot: a local ``Executor`` (or the SandboxFusion client) run synchronously."""

    def __init__(self, slot: int, backend: str = "local", url: Optional[str] = None,
                 isolation: str = "auto", allow_unisolated: bool = False,
                 remote_kwargs: Optional[dict] = None):
        self.slot = slot
        if backend == "local":
            from aletheia_ray.sandbox.executor import Executor

            # One work root per slot: a restarted actor first wipes what a killed one left behind
            # (the pool kills the old actor before starting its replacement).
            self.work_root = os.path.join(tempfile.gettempdir(), f"aletheia-sandbox-slot{slot}")
            shutil.rmtree(self.work_root, ignore_errors=True)
            os.makedirs(self.work_root, mode=0o711)
            self.runner = Executor(isolation=isolation, allow_unisolated=allow_unisolated, slot=slot,
                                   work_root=self.work_root)
        elif backend == "sandboxfusion":
            from aletheia_ray.sandbox.remote import SandboxFusionBackend

            self.runner = SandboxFusionBackend(url, **(remote_kwargs or {}))
        else:
            raise ValueError(f"unknown sandbox backend {backend!r}; expected one of {SANDBOX_BACKENDS}")

    def probe(self) -> dict[str, Any]:
        report = self.runner.probe()
        return {"slot": self.slot, "level": report.level, "layers": dict(report.layers)}

    def run(self, sub: Submission) -> SubmissionResult:
        return self.runner.run(sub)

    def ping(self) -> int:
        return self.slot

    def close(self) -> None:
        """Kill what is left in the slot and remove its work dirs."""
        if hasattr(self.runner, "close"):
            self.runner.close()
        if getattr(self, "work_root", None):
            shutil.rmtree(self.work_root, ignore_errors=True)


def actors_for_cluster(num_cpus_per_actor: float = 0.5, reserve_cpus: float = 0.0) -> int:
    """One actor per CPU slot of the running Ray cluster (all nodes), minus ``reserve_cpus``."""
    total = float(ray.cluster_resources().get("CPU", 0.0)) - reserve_cpus
    return max(1, int(total / num_cpus_per_actor))


@dataclass
class _Task:
    index: int  # position in the input batch
    attempts: int = 0
    last_error: str = ""


@dataclass
class _ActorSlot:
    slot: int
    handle: Any
    queue: deque = field(default_factory=deque)  # (ref, task) in submission order
    head_started: float = 0.0  # when the current head task reached the front


class SandboxPool:
    """``num_actors`` sandbox actors behind one ``score(submissions) -> results`` call."""

    def __init__(self, num_actors: Union[int, str], num_cpus_per_actor: float = 0.5,
                 submission_timeout_s: float = 600.0, max_retries: int = 2,
                 backend: str = "local", url: Optional[str] = None, isolation: str = "auto",
                 allow_unisolated: bool = False, inflight_per_actor: int = 2, spread: bool = True,
                 remote_kwargs: Optional[dict] = None, progress: bool = False,
                 slot_offset: int = 0, reserve_cpus: float = 0.0):
        if num_actors == "auto":  # one actor per CPU slot of the cluster, over all nodes
            num_actors = actors_for_cluster(num_cpus_per_actor, reserve_cpus)
        if not isinstance(num_actors, int) or isinstance(num_actors, bool):
            raise ValueError(f"num_actors must be an int >= 1 or 'auto', got {num_actors!r}")
        if num_actors < 1:
            raise ValueError(f"num_actors must be >= 1, got {num_actors}")
        if backend not in SANDBOX_BACKENDS:
            raise ValueError(f"unknown sandbox backend {backend!r}; expected one of {SANDBOX_BACKENDS}")
        if backend == "sandboxfusion" and not url:
            raise ValueError("backend='sandboxfusion' needs url (e.g. http://host:8080)")
        if inflight_per_actor < 1:
            raise ValueError(f"inflight_per_actor must be >= 1, got {inflight_per_actor}")
        self.submission_timeout_s = float(submission_timeout_s)
        self.max_retries = int(max_retries)
        self.inflight_per_actor = int(inflight_per_actor)
        self.progress = progress
        options: dict[str, Any] = {"num_cpus": num_cpus_per_actor, "max_restarts": 0}
        if spread:
            options["scheduling_strategy"] = "SPREAD"
        actor_kwargs = dict(backend=backend, url=url, isolation=isolation,
                            allow_unisolated=allow_unisolated, remote_kwargs=remote_kwargs)
        # no placement group (actors go where SPREAD / the default scheduler puts them, restarted ones
        # too): the group only tracks the handles for restart (kill + launch) and shutdown
        self._actor_group = ActorGroup("sandbox")
        self._new_actor = lambda slot: self._actor_group.launch(SandboxActor, slot, options=options, **actor_kwargs)
        self._actors = [_ActorSlot(slot=slot_offset + i, handle=self._new_actor(slot_offset + i))
                        for i in range(num_actors)]
        self.stats: dict[str, float] = {}

    # ------------------------------------------------------------------ public API
    def probe(self) -> list[dict[str, Any]]:
        """Per actor: ``{"slot", "level", "layers"}`` of the isolation it achieved."""
        return ray.get([a.handle.probe.remote() for a in self._actors])

    def score(self, submissions: list[Submission]) -> list[SubmissionResult]:
        """Run every submission; results in input order, each exactly once."""
        t0 = time.monotonic()
        results: list[Optional[SubmissionResult]] = [None] * len(submissions)
        pending = deque(_Task(i) for i in range(len(submissions)))
        by_ref: dict[Any, tuple[_ActorSlot, _Task]] = {}
        counters = {"retries": 0, "actor_restarts": 0, "timeouts": 0}
        bar = tqdm(total=len(submissions), desc="sandbox", disable=not self.progress, leave=False)

        def finish(task: _Task, result: SubmissionResult) -> None:
            if results[task.index] is not None:  # defensive: exactly-once is an invariant
                raise RuntimeError(f"submission #{task.index} got a second result")
            results[task.index] = result
            bar.update(1)

        def retry_or_fail(task: _Task, error: str, last: Optional[SubmissionResult]) -> None:
            task.attempts += 1
            task.last_error = error
            if task.attempts <= self.max_retries:
                counters["retries"] += 1
                pending.appendleft(task)
            else:
                finish(task, last or _infra_result(submissions[task.index], f"{error} "
                                                   f"(gave up after {task.attempts} attempts)"))

        def restart(actor: _ActorSlot, reason: str) -> None:
            """Kill + replace the actor; its queued (not running) work goes back to pending."""
            log.warning("sandbox actor slot %d restarted: %s", actor.slot, reason)
            counters["actor_restarts"] += 1
            for ref, task in actor.queue:
                by_ref.pop(ref, None)
                pending.appendleft(task)
            actor.queue.clear()
            self._actor_group.kill(actor.handle)
            actor.handle = self._new_actor(actor.slot)
            try:  # wait until it is up, so its start-up time is not charged to a submission
                ray.get(actor.handle.ping.remote(), timeout=ACTOR_START_TIMEOUT_S)
            except (RayError, GetTimeoutError) as err:  # its tasks will fail and be retried
                log.error("sandbox actor slot %d did not come back: %s", actor.slot, err)

        while pending or by_ref:
            self._dispatch(pending, by_ref, submissions)
            timeout = self._time_to_next_deadline()
            ready, _ = ray.wait(list(by_ref), num_returns=1, timeout=timeout)
            for ref in ready:
                if ref not in by_ref:
                    continue
                actor, task = by_ref.pop(ref)
                actor.queue.remove((ref, task))
                try:
                    result = ray.get(ref)
                except RayTaskError as err:  # the runner raised: a bug or infra, never a reward
                    actor.head_started = time.monotonic()
                    retry_or_fail(task, f"sandbox actor slot {actor.slot} raised "
                                        f"{str(err).strip().splitlines()[-1][:300]}", None)
                    continue
                except RayError as err:  # actor died (RayActorError/ActorDiedError) or lost work
                    why = str(err).strip().replace("\n", " ")[:300]
                    retry_or_fail(task, f"sandbox actor slot {actor.slot} died "
                                        f"({type(err).__name__}: {why})", None)
                    restart(actor, f"{type(err).__name__} while running submission #{task.index}")
                    continue
                actor.head_started = time.monotonic()
                if result.id != submissions[task.index].id:
                    retry_or_fail(task, f"actor returned id {result.id!r} for "
                                        f"{submissions[task.index].id!r}", None)
                elif result.status == Status.INFRA:
                    retry_or_fail(task, _first_detail(result), result)
                else:
                    finish(task, result)
            self._expire_overdue(by_ref, counters, retry_or_fail, restart)
        bar.close()
        self.stats = {"timing_s/sandbox": time.monotonic() - t0, "sandbox/submissions": len(results),
                      **{f"sandbox/{k}": float(v) for k, v in counters.items()}}
        return results  # type: ignore[return-value]

    @property
    def actor_handles(self) -> list[Any]:
        return [a.handle for a in self._actors]

    def shutdown(self) -> None:
        """Close every actor's sandbox (work dirs, leftover processes), then kill the actors."""
        closing = [a.handle.close.remote() for a in self._actors]
        try:
            ray.get(closing, timeout=60)
        except RayError as err:  # a dead actor has nothing left to close
            log.warning("closing sandbox actors: %s", err)
        self._actor_group.shutdown()
        self._actors = []

    # ------------------------------------------------------------------ internals
    def _dispatch(self, pending: deque, by_ref: dict, submissions: list[Submission]) -> None:
        while pending:
            actor = min(self._actors, key=lambda a: len(a.queue))
            if len(actor.queue) >= self.inflight_per_actor:
                return
            task = pending.popleft()
            ref = actor.handle.run.remote(submissions[task.index])
            if not actor.queue:
                actor.head_started = time.monotonic()
            actor.queue.append((ref, task))
            by_ref[ref] = (actor, task)

    def _time_to_next_deadline(self) -> Optional[float]:
        heads = [a.head_started for a in self._actors if a.queue]
        if not heads:
            return None
        return max(0.0, min(heads) + self.submission_timeout_s - time.monotonic())

    def _expire_overdue(self, by_ref, counters, retry_or_fail, restart) -> None:
        now = time.monotonic()
        for actor in self._actors:
            if not actor.queue or now - actor.head_started < self.submission_timeout_s:
                continue
            ref, task = actor.queue.popleft()
            by_ref.pop(ref, None)
            counters["timeouts"] += 1
            retry_or_fail(task, f"pool timeout: no result within {self.submission_timeout_s:g} s "
                                f"on actor slot {actor.slot}", None)
            restart(actor, f"submission #{task.index} exceeded {self.submission_timeout_s:g} s")


def _first_detail(result: SubmissionResult) -> str:
    details = [t.detail for t in result.tests if t.status == Status.INFRA and t.detail]
    return result.detail or (details[0] if details else "InfraError without detail")


def _infra_result(sub: Submission, detail: str) -> SubmissionResult:
    return SubmissionResult(id=sub.id, status=Status.INFRA, pass_rate=None, detail=detail,
                            tests=[TestResult(status=Status.INFRA, detail=detail)])


def testbed_runner(cfg):
    """The testbed builder's runner on Ray (``execution.backend: ray``): one-actor ``SandboxPool``s on
    slots 0..workers-1 (``aletheia_ray.testbed.execution.pool_runner``); Ray must be initialised."""
    from aletheia_ray.testbed.execution import pool_runner

    return pool_runner(cfg, lambda slot: SandboxPool(1, isolation=cfg.isolation, allow_unisolated=cfg.allow_unisolated,
                                                     slot_offset=slot))


def sandbox_pool(s: Any) -> SandboxPool:
    """The pool a training config's ``reward.sandbox`` section describes."""
    return SandboxPool(s.num_actors, s.num_cpus_per_actor, submission_timeout_s=s.submission_timeout_s,
                       max_retries=s.max_retries, backend=s.backend, url=s.url, isolation=s.isolation,
                       slot_offset=s.slot_offset, reserve_cpus=s.reserve_cpus)
