"""Run many submissions on one host with N local executors (one slot each), in input order
(or, with ``ordered=False``, as ``(index, result)`` pairs in completion order)."""
from __future__ import annotations

import queue
import threading
from typing import Callable, Iterable, Iterator, Optional, Union

from aletheia_ray.sandbox.executor import Executor
from aletheia_ray.sandbox.types import Submission, SubmissionResult

WINDOW_PER_WORKER = 64  # jobs submitted but not yet yielded, per worker
Runner = Callable[[Submission], SubmissionResult]
Job = Union[Submission, SubmissionResult]  # a ready result (e.g. an error row) passes through


def run_local(jobs: Iterable[Job], workers: int = 1, slot_base: int = 0,
              isolation: str = "auto", allow_unisolated: bool = False,
              make_runner: Optional[Callable[[int], Runner]] = None, ordered: bool = True,
              ) -> Iterator[Union[SubmissionResult, tuple[int, SubmissionResult]]]:
    """Yield one result per job, in input order. ``make_runner(slot)`` overrides the local
    executor (e.g. a remote backend); by default worker k uses ``Executor(slot=slot_base + k)``.
    With ``ordered=False`` it yields ``(input index, result)`` as soon as each job finishes, so
    one slow job does not hold back the results finished behind it.

    Stopping early (``close()`` the generator, or use it in a ``with contextlib.closing(...)``)
    cancels the queued jobs, waits for the in-flight ones and frees the slots; a generator that
    is merely dropped keeps its slots until it is garbage-collected."""
    if workers < 1:
        raise ValueError(f"workers: must be >= 1, got {workers}")
    todo: "queue.Queue[Optional[tuple[int, Job]]]" = queue.Queue()
    done: "queue.Queue[tuple[int, Optional[SubmissionResult], Optional[BaseException]]]" = \
        queue.Queue()
    executors: list[Executor] = []
    runners = []
    threads: list[threading.Thread] = []
    try:
        for k in range(workers):
            if make_runner is not None:
                runners.append(make_runner(slot_base + k))
            else:
                ex = Executor(isolation=isolation, allow_unisolated=allow_unisolated,
                              slot=slot_base + k)
                executors.append(ex)
                runners.append(ex.run)

        def work(run: Callable[[Submission], SubmissionResult]) -> None:
            while (item := todo.get()) is not None:
                index, job = item
                try:
                    res = job if isinstance(job, SubmissionResult) else run(job)
                    done.put((index, res, None))
                except BaseException as exc:  # noqa: BLE001 - surfaced to the caller below
                    done.put((index, None, exc))

        threads = [threading.Thread(target=work, args=(r,), daemon=True, name=f"run_local-{k}")
                   for k, r in enumerate(runners)]
        for t in threads:
            t.start()
        pending: dict[int, SubmissionResult] = {}
        submitted = emitted = 0
        source = iter(jobs)
        exhausted = False
        while not exhausted or emitted < submitted:
            while not exhausted and submitted - emitted < WINDOW_PER_WORKER * workers:
                job = next(source, None)
                if job is None:
                    exhausted = True
                    for _ in threads:
                        todo.put(None)
                    break
                todo.put((submitted, job))
                submitted += 1
            if emitted == submitted:
                continue
            index, res, exc = done.get()
            if exc is not None:
                raise exc
            if not ordered:
                emitted += 1
                yield index, res  # type: ignore[misc]
                continue
            pending[index] = res  # type: ignore[assignment]
            while emitted in pending:
                yield pending.pop(emitted)
                emitted += 1
    finally:
        # also on an early exit (a worker raised, or the caller stopped iterating): cancel the
        # queued jobs and wait for the in-flight ones, so no worker still uses an executor while
        # it closes and none outlives this call
        while True:
            try:
                todo.get_nowait()
            except queue.Empty:
                break
        for t in threads:
            todo.put(None)
        for t in threads:
            t.join()
        for ex in executors:
            ex.close()
