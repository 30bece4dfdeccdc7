"""A private process group (learner rank 0 + every rollout worker) for the collective transport.

Built straight from a ``TCPStore`` and ``ProcessGroupGloo``/``ProcessGroupNCCL`` objects, without
``init_process_group``: it never touches the default group that DeepSpeed (learner) or vLLM
(rollout worker) already own in the same process. Rank 0 (the learner) hosts the store.
"""
from __future__ import annotations

from datetime import timedelta

import torch
import torch.distributed as dist

from aletheia_ray.sync import COLLECTIVE_BACKENDS

STORE_PREFIX = "aletheia_weight_sync"


def open_store(host: str, world_size: int, timeout_s: float) -> dist.TCPStore:
    """Host the group's store on a free port of ``host`` (rank 0 only); read ``.port`` from it."""
    return dist.TCPStore(
        host, 0, world_size, is_master=True, timeout=timedelta(seconds=timeout_s),
        wait_for_workers=False,
    )


def join_group(
    *, host: str, port: int, rank: int, world_size: int, backend: str, timeout_s: float,
    local_host: str, store: dist.TCPStore | None = None,
):
    """Join the group (blocks until all ``world_size`` ranks joined or ``timeout_s`` passed).

    ``host:port`` is rank 0's store; ``local_host`` is this process's address that the others
    can reach (gloo binds its device there).
    """
    if backend not in COLLECTIVE_BACKENDS:
        raise ValueError(f"weight-sync backend must be one of {COLLECTIVE_BACKENDS}, got {backend!r}")
    timeout = timedelta(seconds=timeout_s)
    if store is None:
        store = dist.TCPStore(host, port, world_size, is_master=False, timeout=timeout)
    prefixed = dist.PrefixStore(STORE_PREFIX, store)
    if backend == "gloo":
        opts = dist.ProcessGroupGloo._Options()
        opts._timeout = timeout
        opts._devices = [dist.ProcessGroupGloo.create_device(hostname=local_host)]
        return dist.ProcessGroupGloo(prefixed, rank, world_size, opts)
    if not hasattr(dist, "ProcessGroupNCCL") or not torch.cuda.is_available():
        raise RuntimeError("weight-sync backend 'nccl' needs CUDA and a torch built with NCCL")
    opts = dist.ProcessGroupNCCL.Options()
    opts._timeout = timeout
    return dist.ProcessGroupNCCL(prefixed, rank, world_size, opts)


def broadcast_from_rank0(group, tensor: torch.Tensor) -> None:
    """Broadcast ``tensor`` in place from rank 0 of ``group`` and wait for it."""
    opts = dist.BroadcastOptions()
    opts.rootRank = 0
    opts.rootTensor = 0
    group.broadcast([tensor], opts).wait()
    if tensor.is_cuda:
        torch.cuda.current_stream().synchronize()


def group_device(backend: str) -> torch.device:
    """Where bucket buffers live for this backend: CPU for gloo, the current GPU for NCCL."""
    if backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
