"""Learner group: N DeepSpeed ZeRO-2 (or ZeRO-3) ranks as Ray actors forming one process group.

``LearnerGroup`` (driver side) shards a ``TrainBatch`` over the ranks; each ``LearnerRank`` runs
forward/backward over its micro-batches. Token-level (DAPO) normalisation uses the GLOBAL token
count: every rank's loss is ``sum(its tokens) / global_tokens * world_size`` because ZeRO averages
gradients over ranks. Gradient accumulation: the accumulation boundary is set by hand on the last
micro-batch, so one ``train_step`` is exactly one optimizer step whatever the batch size.

Memory (``MemoryOptions``, docs/memory.md): logprobs are computed at the scored positions only,
``logprob_chunk_tokens`` at a time (never [rows, positions, vocab] logits); micro-batches are a
row cap or a token budget (rows grouped by length, each trimmed to its longest row); gradient
checkpointing, ZeRO-3 and optimizer/parameter offload are config choices. Every micro-batch
reaches the model through ``TrainBatch.to(self.device)``, the DeepSpeed engine's compute device;
the model's forward checks its inputs are there.

Placement: the ranks sit in one placement group, rank r in bundle r (``learner_bundles``). Without
a ``placement_group`` argument the group creates its own (PACK by default: ranks on as few nodes
as possible) and removes it on ``shutdown``; a given one is used as is and left to its owner.
"""
from __future__ import annotations

import math
import os
import socket
import time
from typing import Any, Callable, Iterator, Optional, Union

import ray
import torch

from aletheia_ray.algorithms.logprobs import masked_sum, scored_logprobs
from aletheia_ray.algorithms.registry import Algorithm, check_loss_kwargs, get_algorithm
from aletheia_ray.algorithms.schedules import constant_with_warmup_scheduler
from aletheia_ray.batch import TrainBatch
from aletheia_ray.causal_lm import DTYPES, Scored, batch_logprobs, head_calls_per_micro_batch, load_causal_lm
from aletheia_ray.device import add_forward_device_check, model_device
from aletheia_ray.memory_options import (MemoryOptions, deepspeed_config, enable_gradient_checkpointing,
                                         make_optimizer, peak_memory_gb)
from aletheia_ray.metrics import add_gap_sums, gap_metrics_from_sums, logprob_gap_sums
from aletheia_ray.micro_batches import micro_batches, near_equal_bounds, plan_micro_batches
from aletheia_ray.nonfinite import NonFiniteGuard, backward_scale, rank_report
from aletheia_ray.threads import apply_thread_budget, thread_budget, thread_report
from aletheia_ray.actors.group import ActorGroup
from aletheia_ray.actors.weight_sync.sender import WeightSenderMixin

_ADDITIVE = "additive"  # loss metrics are sums over tokens / global count: add across micro-batches and ranks


def gather_ranks(refs: list, what: str, timeout_s: Optional[float] = None) -> list:
    """``ray.get`` the ranks' results, failing fast with the rank's name: a rank that raised leaves the
    others blocked in a collective, so waiting for all of them would hang forever. Ranks that have not
    answered within ``timeout_s`` (a hang: a deadlocked collective, a stuck kernel) are named too."""
    index = {ref: r for r, ref in enumerate(refs)}
    pending, results = list(refs), {}
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while pending:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, pending = ray.wait(pending, num_returns=1, timeout=wait)
        if not ready:
            silent = sorted(index[ref] for ref in pending)
            raise TimeoutError(f"learner rank(s) {silent} did not finish {what} within {timeout_s:g}s "
                               f"(learner.call_timeout_s); ranks that answered: {sorted(results)}")
        for ref in ready:
            try:
                results[index[ref]] = ray.get(ref)
            except Exception as exc:
                raise RuntimeError(f"learner rank {index[ref]} failed during {what}: {exc}; the other ranks "
                                   "may be stuck in a collective: recreate the LearnerGroup") from exc
    return [results[r] for r in range(len(refs))]


def learner_bundles(num_ranks: int, num_cpus_per_rank: float, num_gpus_per_rank: float) -> list[dict]:
    """One bundle per rank holding exactly what the rank actor asks for."""
    if num_cpus_per_rank < 0 or num_gpus_per_rank < 0 or num_cpus_per_rank + num_gpus_per_rank <= 0:
        raise ValueError(f"a learner rank needs CPUs or GPUs, got num_cpus_per_rank={num_cpus_per_rank}, "
                         f"num_gpus_per_rank={num_gpus_per_rank}")
    bundle = {k: v for k, v in (("CPU", num_cpus_per_rank), ("GPU", num_gpus_per_rank)) if v > 0}
    return [dict(bundle) for _ in range(num_ranks)]


def shard_rows(batch: TrainBatch, num_shards: int, rows_per_unit: int = 1) -> list[TrainBatch]:
    """Contiguous, near-equal row shards (sizes differ by at most one unit of ``rows_per_unit``
    consecutive rows, which stay together: DPO's chosen/rejected pairs)."""
    unit = rows_per_unit
    if len(batch) % unit:
        raise ValueError(f"batch of {len(batch)} rows is not whole units of {unit} rows")
    if len(batch) // unit < num_shards:
        raise ValueError(f"batch of {len(batch) // unit} units cannot be split over {num_shards} learner ranks")
    return [batch.slice(start * unit, end * unit) for start, end in near_equal_bounds(len(batch) // unit, num_shards)]


class LearnerRank(WeightSenderMixin):
    """One data-parallel rank: HF model wrapped by a DeepSpeed ZeRO-2 (or -3) engine."""

    def __init__(self, rank: int, world_size: int, model_path: str, *, lr: float, weight_decay: float,
                 warmup_steps: int, grad_clip: float, micro_batch_size: int, dtype: str,
                 attn_implementation: str, backend: str, seed: int, memory: Optional[MemoryOptions] = None,
                 num_threads: int = 1):
        apply_thread_budget(num_threads)  # Ray's OMP_NUM_THREADS=1 for < 2 CPUs otherwise (threads.py)
        self.rank, self.world_size, self.model_path = rank, world_size, model_path
        self.opt = dict(lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps, grad_clip=grad_clip,
                        micro_batch_size=micro_batch_size, dtype=dtype, attn_implementation=attn_implementation,
                        backend=backend, seed=seed)
        self.micro_batch_size = micro_batch_size
        self.memory = memory or MemoryOptions()
        self.engine = None
        self.device: Optional[torch.device] = None
        self._full_weights: Optional[dict[str, torch.Tensor]] = None  # ZeRO-3: rank 0's gathered copy
        self._train_calls = 0  # train_step calls so far (names the call in the test-only fault injection)

    def master_address(self) -> tuple[str, int]:
        """Rank 0 picks the rendezvous address (its node IP) and a free port."""
        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        return ray.util.get_node_ip_address(), port

    def init_process_group(self, master_addr: str, master_port: int) -> None:
        """Join the process group (all ranks call this concurrently) and build the ZeRO engine."""
        import deepspeed

        o, mem = self.opt, self.memory
        os.environ.update(MASTER_ADDR=master_addr, MASTER_PORT=str(master_port), RANK=str(self.rank),
                          WORLD_SIZE=str(self.world_size), LOCAL_RANK="0")  # Ray pins one device per actor
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # no ~90 s JIT build on CPU
        deepspeed.init_distributed(dist_backend=o["backend"])
        torch.manual_seed(o["seed"])
        model = load_causal_lm(self.model_path, o["dtype"], o["attn_implementation"])
        device = torch.device(deepspeed.get_accelerator().current_device_name())
        optimizer = make_optimizer(model, lr=o["lr"], weight_decay=o["weight_decay"],
                                   offload_optimizer=mem.offload_optimizer, device=device)
        config = deepspeed_config(micro_batch_size=o["micro_batch_size"], grad_clip=o["grad_clip"], dtype=o["dtype"],
                                  zero_stage=mem.zero_stage, offload_optimizer=mem.offload_optimizer,
                                  offload_params=mem.offload_params, pin_memory=device.type == "cuda")
        self.engine, *_ = deepspeed.initialize(
            model=model, optimizer=optimizer, config=config,
            lr_scheduler=constant_with_warmup_scheduler(optimizer, o["warmup_steps"]),
        )
        self.engine.module.eval()  # dropout off for RL logprobs
        if mem.gradient_checkpointing:  # after eval(): it flags the checkpointed layers as training
            enable_gradient_checkpointing(self.engine.module)
        self.device = model_device(self.engine)  # the engine's compute device, not an assumption
        add_forward_device_check(self.engine.module, self.device)
        self._gather_full_weights()

    def placement(self) -> dict:
        """Where Ray put this rank (placement group id in hex, node id)."""
        ctx = ray.get_runtime_context()
        return {"placement_group_id": ctx.get_placement_group_id(), "node_id": ctx.get_node_id()}

    def threads(self) -> dict:
        return thread_report()

    def peak_memory(self) -> dict[str, float]:
        return peak_memory_gb()

    def compute_logprobs(self, shard: TrainBatch, temperature: float = 1.0, scored: Scored = "all",
                         head_calls: Optional[list[int]] = None) -> torch.Tensor:
        mem = self.memory
        return batch_logprobs(self.engine, shard, micro_batch_size=self.micro_batch_size,
                              max_tokens=mem.max_tokens_per_micro_batch, temperature=temperature,
                              chunk_tokens=mem.logprob_chunk_tokens, scored=scored, head_calls=head_calls)

    def train_step(self, shard: TrainBatch, loss_fn: Union[str, Callable], loss_kwargs: dict, *, global_num_tokens: float,
                   global_num_sequences: float, num_micro_batches: int, temperature: float = 1.0,
                   head_calls: Optional[list[int]] = None, weight: float = 1.0, rows_per_unit: int = 1) -> dict:
        """Accumulate gradients over ``num_micro_batches`` (the same on every rank: each backward is a
        collective under ZeRO; a rank with fewer micro-batches repeats its last one with weight 0),
        then take one optimizer step. ``head_calls`` (ZeRO-3): output-head calls per micro-batch.
        ``loss_fn``: an algorithm's loss (``aletheia_ray.algorithms.registry``). ``weight=0``: a rank
        with no rows of its own (a filtered batch smaller than the group) joins every collective.
        ``rows_per_unit``: rows a micro-batch never splits (the algorithm's; DPO: 2, a pair).
        Returns additive metric sums and grad_norm / lr."""
        engine, mem = self.engine, self.memory
        if isinstance(loss_fn, str):  # a registered algorithm's name
            loss_fn = get_algorithm(loss_fn).loss
        micro = [mb for _, mb in micro_batches(shard, self.micro_batch_size, mem.max_tokens_per_micro_batch,
                                               rows_per_unit)]
        weights = [weight] * len(micro) + [0.0] * (num_micro_batches - len(micro))
        micro += [micro[-1]] * (num_micro_batches - len(micro))
        sums: dict[str, float] = {}
        self._train_calls += 1
        loss_finite = True  # a non-finite loss NaN-scales its backward: DeepSpeed then skips the step (nonfinite.py)
        gap: Optional[dict[str, float]] = None  # engine vs this update's logprobs, when no old-logprob pass ran
        for i, (mb, weight) in enumerate(zip(micro, weights)):
            mb = mb.to(self.device)
            engine.set_gradient_accumulation_boundary(i == num_micro_batches - 1)
            logprobs, entropy = scored_logprobs(engine, mb.input_ids, mb.attention_mask, mb.loss_mask,
                                                temperature=temperature, with_entropy=True,
                                                chunk_tokens=mem.logprob_chunk_tokens,
                                                num_chunks=head_calls[i] if head_calls else None)
            mb_loss, metrics = loss_fn(logprobs, mb, global_num_tokens=global_num_tokens,
                                       global_num_sequences=global_num_sequences, **loss_kwargs)
            metrics["loss"] = float(mb_loss.detach())
            loss_finite = loss_finite and math.isfinite(metrics["loss"])
            engine.backward(mb_loss * backward_scale(metrics["loss"], weight * self.world_size, rank=self.rank,
                                                     call=self._train_calls))
            engine.step()
            metrics["entropy"] = float(masked_sum(entropy, mb.loss_mask)) / global_num_tokens
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + weight * value
            if weight > 0 and mb.old_logprobs is None and mb.rollout_logprobs is not None:
                gap = add_gap_sums(gap, logprob_gap_sums(logprobs.detach(), mb.rollout_logprobs, mb.loss_mask))
        grad_norm = engine.get_global_grad_norm()
        grad_norm = float(grad_norm) if grad_norm is not None else None
        self._gather_full_weights()
        return {_ADDITIVE: sums, "grad_norm": float("nan") if grad_norm is None else grad_norm,
                "lr": float(engine.get_lr()[0]), "rollout_gap": gap,
                "nonfinite": rank_report(loss_finite=loss_finite, applied=engine.was_step_applied(), grad_norm=grad_norm)}

    def set_lr(self, lr: float) -> float:
        """A new peak learning rate from the next optimizer step on (the warm-up schedule goes on)."""
        scheduler = self.engine.lr_scheduler
        scheduler.base_lrs = [lr] * len(scheduler.base_lrs)
        for group, multiplier in zip(scheduler.optimizer.param_groups, scheduler.lr_lambdas):
            group["lr"] = lr * multiplier(scheduler.last_epoch)
        return float(self.engine.get_lr()[0])

    def save_checkpoint(self, directory: str, client_state: dict) -> None:
        self.engine.save_checkpoint(directory, client_state=dict(client_state))

    def load_checkpoint(self, directory: str) -> dict:
        path, client_state = self.engine.load_checkpoint(directory)
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint found in {directory!r} (missing 'latest' tag?)")
        self._gather_full_weights()
        return client_state

    def _gather_full_weights(self) -> None:
        """ZeRO-3 only: every rank takes part in gathering each partitioned parameter (a collective),
        rank 0 keeps a CPU copy for weight sync, HF export and the reference re-sync, which only
        rank 0 serves. Called at the end of every call all ranks make (init, train_step, load)."""
        if self.memory.zero_stage != 3:
            return
        import deepspeed

        self._full_weights = None  # never two copies in host memory at once
        module, full = self.engine.module, {}
        for name, param in module.named_parameters(remove_duplicate=False):  # tied lm_head.weight too
            with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
                if self.rank == 0:
                    full[name] = param.detach().to("cpu", copy=True)
        if self.rank == 0:
            for name, tensor in module.state_dict().items():  # persistent buffers: never partitioned
                full.setdefault(name, tensor.detach().to("cpu", copy=True))
            self._full_weights = full

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """Cloned, contiguous CPU copies (a ZeRO-2 state_dict is views into one flat buffer: pickling
        a view would serialize the whole buffer per tensor)."""
        return {name: t.detach().to("cpu", copy=True).contiguous() for name, t in self.named_weights_for_sync()}

    def named_weights_for_sync(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Full weights incl. ``lm_head.weight`` when tied (state_dict has it, named_parameters not)."""
        if self.memory.zero_stage == 3:
            if self._full_weights is None:
                raise RuntimeError(f"learner rank {self.rank} holds no gathered ZeRO-3 weights (only rank 0 does)")
            yield from self._full_weights.items()
            return
        for name, tensor in self.engine.module.state_dict().items():
            yield name, tensor.detach()

    def save_hf(self, directory: str) -> None:
        """HF directory (weights + config + tokenizer) loadable by transformers and vLLM."""
        from transformers import AutoTokenizer

        self.engine.module.save_pretrained(directory, state_dict=self.full_state_dict())
        AutoTokenizer.from_pretrained(self.model_path).save_pretrained(directory)


class LearnerGroup:
    """Driver-side handle over ``num_ranks`` ``LearnerRank`` actors (``self.ranks[0]`` sends weights)."""

    def __init__(self, num_ranks: int, model_path: str, *, num_cpus_per_rank: float = 1,
                 num_gpus_per_rank: float = 0, placement_group=None, lr: float, weight_decay: float = 0.0,
                 warmup_steps: int = 0, grad_clip: float = 1.0, micro_batch_size: int, dtype: str = "float32",
                 attn_implementation: str = "sdpa", backend: str = "gloo", seed: int = 0,
                 call_timeout_s: Optional[float] = None, placement_strategy: str = "PACK",
                 ready_timeout_s: float = 600, memory: Optional[MemoryOptions] = None,
                 num_threads_per_rank: Optional[int] = None, on_nonfinite: str = "skip",
                 max_nonfinite_skips: Optional[int] = 5):
        if num_ranks < 1 or micro_batch_size < 1:
            raise ValueError(f"num_ranks ({num_ranks}) and micro_batch_size ({micro_batch_size}) must be >= 1")
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(DTYPES)}")
        self.num_ranks = num_ranks
        self.call_timeout_s = call_timeout_s
        self.nonfinite, self.updates = NonFiniteGuard(on_nonfinite, max_nonfinite_skips), 0  # learner.on_nonfinite
        self.memory = memory or MemoryOptions()
        if placement_group is not None and placement_group.bundle_count < num_ranks:
            raise ValueError(f"placement group has {placement_group.bundle_count} bundles for {num_ranks} learner ranks")
        # rank r in bundle r of our own placement group (removed on shutdown) or of the given one
        bundles = (None if placement_group is not None
                   else learner_bundles(num_ranks, num_cpus_per_rank, num_gpus_per_rank))
        self._actor_group = ActorGroup("learner", bundles, placement_strategy, placement_group=placement_group,
                                       ready_timeout_s=ready_timeout_s)
        self.placement_group = self._actor_group.placement_group
        self._owns_placement_group = self._actor_group.owns_placement_groups
        actor_cls = ray.remote(LearnerRank)
        options = dict(num_cpus=num_cpus_per_rank, num_gpus=num_gpus_per_rank, name=None)
        self.ranks: list = [
            self._actor_group.launch(
                actor_cls, r, num_ranks, model_path, bundle_index=r, options=options, lr=lr,
                weight_decay=weight_decay, warmup_steps=warmup_steps, grad_clip=grad_clip,
                micro_batch_size=micro_batch_size, dtype=dtype, attn_implementation=attn_implementation,
                backend=backend, seed=seed, memory=self.memory,
                num_threads=thread_budget(num_cpus_per_rank, num_threads_per_rank))
            for r in range(num_ranks)]
        self.micro_batch_size = micro_batch_size
        try:
            addr, port = ray.get(self.ranks[0].master_address.remote(), timeout=ready_timeout_s)
            self._gather([rank.init_process_group.remote(addr, port) for rank in self.ranks], "init_process_group")
        except BaseException:
            self.shutdown()  # no leaked ranks / placement group
            raise

    def _gather(self, refs: list, what: str) -> list:
        return gather_ranks(refs, what, self.call_timeout_s)

    def _num_micro_batches(self, shards: list[TrainBatch], rows_per_unit: int = 1) -> int:
        """The most micro-batches any rank's shard needs (every rank runs that many)."""
        return max(len(plan_micro_batches(s.row_lengths(), self.micro_batch_size,
                                          self.memory.max_tokens_per_micro_batch, rows_per_unit)) for s in shards)

    def _head_calls(self, shards: list[TrainBatch], scored: Scored, rows_per_unit: int = 1) -> Optional[list[int]]:
        """ZeRO-3 only: the output-head calls of each micro-batch, equal on every rank."""
        if self.memory.zero_stage != 3:
            return None
        return head_calls_per_micro_batch(shards, micro_batch_size=self.micro_batch_size,
                                          max_tokens=self.memory.max_tokens_per_micro_batch, scored=scored,
                                          chunk_tokens=self.memory.logprob_chunk_tokens, rows_per_unit=rows_per_unit)

    def compute_logprobs(self, batch: TrainBatch, temperature: float = 1.0, scored: Scored = "all") -> torch.Tensor:
        """[B, T-1] logprobs at the scored positions ("all" real tokens | the "response" tokens of
        the loss), zeros elsewhere. Under ZeRO-3 every rank runs as many forwards and head calls."""
        zero3 = self.memory.zero_stage == 3
        shards = shard_rows(batch, self.num_ranks if zero3 else min(self.num_ranks, len(batch)))
        head_calls = self._head_calls(shards, scored)
        parts = self._gather([rank.compute_logprobs.remote(s, temperature, scored, head_calls)
                              for rank, s in zip(self.ranks, shards)], "compute_logprobs")
        return torch.cat(parts, dim=0)

    def train_step(self, batch: TrainBatch, loss: Union[str, Algorithm], loss_kwargs: Optional[dict] = None, *,
                   temperature: float = 1.0, step: Optional[int] = None) -> dict[str, float]:
        """One optimizer step over the whole batch with an algorithm's loss (its registry entry or
        name); returns ``actor/*`` metrics. A batch with fewer rows than ranks (a sample filter kept
        few) leaves the other ranks idle with weight 0. A non-finite loss or gradient norm is never
        applied (``learner.on_nonfinite``, aletheia_ray/nonfinite.py); ``step`` names it in errors."""
        loss_kwargs = dict(loss_kwargs or {})
        name = loss if isinstance(loss, str) else loss.name
        algorithm = check_loss_kwargs(name, loss_kwargs)  # fail here, not inside a collective on one rank
        loss_fn, unit = algorithm.loss, algorithm.rows_per_unit
        num_tokens = float(batch.loss_mask.sum())
        if num_tokens <= 0:
            raise ValueError("train_step got a batch without response tokens (loss_mask is all zero)")
        num_sequences = float((batch.loss_mask.sum(-1) > 0).sum())
        shards = shard_rows(batch, min(self.num_ranks, len(batch) // unit), unit)
        weights = [1.0] * len(shards) + [0.0] * (self.num_ranks - len(shards))
        shards += [batch.slice(0, unit)] * (self.num_ranks - len(shards))  # idle ranks: a stand-in unit, weight 0
        head_calls = self._head_calls(shards, "response", unit)
        num_micro = len(head_calls) if head_calls else self._num_micro_batches(shards, unit)
        results = self._gather([
            rank.train_step.remote(s, loss_fn, loss_kwargs, global_num_tokens=num_tokens,
                                   global_num_sequences=num_sequences, num_micro_batches=num_micro,
                                   temperature=temperature, head_calls=head_calls, weight=w, rows_per_unit=unit)
            for rank, s, w in zip(self.ranks, shards, weights)
        ], "train_step")
        self.updates += 1
        where = f"learner update {self.updates}" + (f" (RL step {step})" if step is not None else "")
        metrics: dict[str, float] = self.nonfinite.check([r["nonfinite"] for r in results], where)
        for result in results:
            for key, value in result[_ADDITIVE].items():
                metrics[f"actor/{key}"] = metrics.get(f"actor/{key}", 0.0) + value
        metrics.update({"actor/grad_norm": results[0]["grad_norm"], "actor/lr": results[0]["lr"],
                        "actor/num_tokens": num_tokens})
        gap = None
        for result in results:
            gap = add_gap_sums(gap, result["rollout_gap"])
        if gap is not None:  # the batch came without old logprobs: the update's own are the trainer's
            metrics.update(gap_metrics_from_sums(gap, num_tokens))
        return metrics

    def set_lr(self, lr: float) -> float:
        """Every rank's peak learning rate (e.g. the cold start's own ``cold_start.lr``); returns the current lr."""
        return self._gather([rank.set_lr.remote(lr) for rank in self.ranks], "set_lr")[0]

    def save_checkpoint(self, directory: str, client_state: dict[str, Any]) -> None:
        self._gather([rank.save_checkpoint.remote(directory, client_state) for rank in self.ranks], "save_checkpoint")

    def load_checkpoint(self, directory: str) -> dict[str, Any]:
        states = self._gather([rank.load_checkpoint.remote(directory) for rank in self.ranks], "load_checkpoint")
        return states[0]

    def save_hf(self, directory: str) -> None:
        self._gather([self.ranks[0].save_hf.remote(directory)], "save_hf")

    def get_weights_ref(self) -> ray.ObjectRef:
        """ObjectRef of rank 0's cloned, contiguous CPU state dict (for ``ReferenceActor.load_weights``)."""
        return self.ranks[0].full_state_dict.remote()

    def peak_memory(self) -> dict[str, float]:
        """Each rank's peak memory, as ``memory/learner_rank{r}/<key>`` (GiB)."""
        per_rank = self._gather([rank.peak_memory.remote() for rank in self.ranks], "peak_memory")
        return {f"memory/learner_rank{r}/{k}": v for r, m in enumerate(per_rank) for k, v in m.items()}

    def placements(self) -> list[dict]:
        """Each rank's ``LearnerRank.placement()``, in rank order."""
        return self._gather([rank.placement.remote() for rank in self.ranks], "placement")

    def threads(self) -> list[dict]:
        """Each rank's intra-op threads (``threads.thread_report``), in rank order."""
        return self._gather([rank.threads.remote() for rank in self.ranks], "threads")

    def shutdown(self) -> None:
        """Kill the ranks; remove the placement group if this group created it. Idempotent."""
        self._actor_group.shutdown()
        self.ranks = []
        self.placement_group = None
