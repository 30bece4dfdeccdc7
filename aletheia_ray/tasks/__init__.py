"""Training tasks by ``data.kind`` (the protocol: ``aletheia_ray.tasks.base.Task``)."""
from aletheia_ray.tasks.base import Task, TaskData
from aletheia_ray.tasks.codegen import CodeGenerationTask
from aletheia_ray.tasks.verifier_lists import SyntheticListsTask, VerifierListsTask
from aletheia_ray.tasks.verifier_pairs import VerifierPairsTask

TASKS: dict[str, Task] = {t.name: t for t in (VerifierListsTask(), SyntheticListsTask(), VerifierPairsTask(),
                                              CodeGenerationTask())}


def get_task(kind: str) -> Task:
    if kind not in TASKS:
        raise KeyError(f"unknown task {kind!r} (data.kind); known tasks: {sorted(TASKS)}")
    return TASKS[kind]


__all__ = ["TASKS", "Task", "TaskData", "get_task"]
