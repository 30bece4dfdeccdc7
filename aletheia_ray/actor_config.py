"""The config sections that map onto one actor pool each (``rollout`` -> ``RolloutPool``, ``learner`` ->
``LearnerGroup``, ``reference`` -> ``ReferenceActor``, ``reward`` -> ``RewardPool`` and the sandbox pool,
``sync`` -> ``WeightSync``) and where Ray runs (``ray``); ``train_config.TrainConfig`` holds them."""
from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import Field, field_validator

from aletheia_ray.config import StrictModel
from aletheia_ray.memory_options import MemoryOptions
from aletheia_ray.rewards import REWARD_FNS
from aletheia_ray.sandbox.types import SANDBOX_BACKENDS
from aletheia_ray.sync import COLLECTIVE_BACKENDS, TRANSPORTS
from aletheia_ray.tasks import TASKS


class RolloutConfig(StrictModel):
    num_engines: int = Field(1, gt=0)
    num_cpus_per_engine: float = Field(1.0, gt=0)
    # intra-op threads of each engine; None: max(1, floor(num_cpus_per_engine)) (aletheia_ray/threads.py)
    num_threads_per_engine: Optional[int] = Field(None, gt=0)
    num_gpus_per_engine: float = Field(0.0, ge=0)
    tensor_parallel_size: int = Field(1, gt=0)
    kv_cache_gb: float = Field(1.0, gt=0)  # CPU only (VLLM_CPU_KVCACHE_SPACE)
    # GPU only: vLLM's share of its GPU's memory (weights + KV cache); lower it when other roles share
    # the GPU through fractional num_gpus (configs/gpu_smoke.yaml). Colocated: colocate.gpu_memory_utilization
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)
    enforce_eager: bool = True
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(256, gt=0)  # the response budget (paper: 16k)
    engine_kwargs: dict[str, Any] = {}  # extra vllm.LLM arguments (on CPU RolloutPool turns chunked prefill off unless set here)
    # an engine whose process died: restart = replace it in its bundle, load the current weights, re-send its
    # prompts with the same seeds (at most max_engine_restarts times per run); stop = fail naming it
    # (actors/rollout_recovery.py, docs/training.md "Process failures")
    on_engine_failure: Literal["restart", "stop"] = "restart"
    max_engine_restarts: int = Field(3, ge=0)


class LearnerConfig(StrictModel):
    num_ranks: int = Field(2, gt=0)
    num_cpus_per_rank: float = Field(1.0, gt=0)
    num_threads_per_rank: Optional[int] = Field(None, gt=0)  # None: max(1, floor(num_cpus_per_rank))
    num_gpus_per_rank: float = Field(0.0, ge=0)
    lr: float = Field(1e-6, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)  # constant schedule after a linear warm-up
    grad_clip: float = Field(1.0, gt=0)
    micro_batch_size: int = Field(4, gt=0)  # rows per micro-batch (a cap when a token budget is set)
    # token budget per micro-batch (rows x longest row after grouping rows by length); None: rows only.
    # Must be >= model.max_model_len (one whole sequence always fits). docs/memory.md
    max_tokens_per_micro_batch: Optional[int] = Field(None, gt=0)
    logprob_chunk_tokens: int = Field(1024, gt=0)  # scored positions whose logits exist at once
    gradient_checkpointing: bool = False  # recompute decoder layers in the backward pass
    zero_stage: Literal[2, 3] = 2  # 3: parameters partitioned over the ranks too
    offload_optimizer: bool = False  # fp32 master weights + Adam states in host memory
    offload_params: bool = False  # ZeRO-3 only: parameters in host memory between uses
    backend: Literal[COLLECTIVE_BACKENDS] = "gloo"
    # Ray strategy of the ranks' placement group (one bundle per rank): PACK = as few nodes as
    # possible, SPREAD = over as many nodes as possible (STRICT_*: or fail). docs/gpu.md
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    # a learner call (update, logprobs, checkpoint) that has not finished by then is a hang: fail
    # naming the silent ranks instead of waiting forever
    call_timeout_s: float = Field(3600.0, gt=0)
    # a non-finite loss or gradient norm: the update is never applied (DeepSpeed's overflow skip, on
    # every rank; aletheia_ray/nonfinite.py). skip: record it and go on, but stop at the
    # (max_nonfinite_skips + 1)-th skipped update in a row (None: never); stop: fail at once naming
    # the step, the rank(s) and the quantity
    on_nonfinite: Literal["skip", "stop"] = "skip"
    max_nonfinite_skips: Optional[int] = Field(5, ge=0)

    @field_validator("offload_params")
    @classmethod
    def _offload_params_needs_zero3(cls, value: bool, info) -> bool:
        if value and info.data.get("zero_stage") != 3:
            raise ValueError("offload_params needs learner.zero_stage=3 (ZeRO-2 keeps full parameters on every rank)")
        return value

    def memory_options(self) -> MemoryOptions:
        return MemoryOptions(zero_stage=self.zero_stage, offload_optimizer=self.offload_optimizer,
                             offload_params=self.offload_params, gradient_checkpointing=self.gradient_checkpointing,
                             max_tokens_per_micro_batch=self.max_tokens_per_micro_batch,
                             logprob_chunk_tokens=self.logprob_chunk_tokens)


class ReferenceConfig(StrictModel):
    enabled: bool = True  # ignored (off) when algorithm.beta == 0
    sync_steps: int = Field(100, ge=0)  # re-sync from the learner every N steps; 0 = never
    # compute reference logprobs while the learner computes old logprobs (independent passes on
    # different actors); timing_s/ref is then only the wait left after old_logprob
    overlap_old_logprob: bool = True
    num_cpus: float = Field(1.0, gt=0)
    num_gpus: float = Field(0.0, ge=0)
    num_threads: Optional[int] = Field(None, gt=0)  # None: max(1, floor(num_cpus))
    # its logprob pass's micro-batches; None: the learner's (learner.micro_batch_size,
    # learner.max_tokens_per_micro_batch; chunking: learner.logprob_chunk_tokens)
    micro_batch_size: Optional[int] = Field(None, gt=0)
    max_tokens_per_micro_batch: Optional[int] = Field(None, gt=0)


class OverlongConfig(StrictModel):
    enabled: bool = True  # DAPO soft overlong punishment over the last `cache` tokens of the budget
    cache: int = Field(4096, gt=0)


class SandboxRewardConfig(StrictModel):
    num_actors: Union[int, Literal["auto"]] = 2  # auto: one per CPU slot of the cluster
    num_cpus_per_actor: float = Field(0.5, gt=0)
    reserve_cpus: float = Field(0.0, ge=0)  # with auto: CPUs left for the other actors
    max_retries: int = Field(2, ge=0)  # InfraError / timeout / dead actor re-dispatches
    slot_offset: int = Field(0, ge=0)  # first sandbox slot (uid/cgroup) of the pool's actors

    @field_validator("num_actors")
    @classmethod
    def _positive_or_auto(cls, value: Any) -> Any:
        if value != "auto" and value < 1:
            raise ValueError(f"must be >= 1 or 'auto', got {value}")
        return value
    backend: Literal[SANDBOX_BACKENDS] = "local"
    url: Optional[str] = None
    isolation: str = "auto"
    submission_timeout_s: float = Field(600.0, gt=0)


class RewardConfig(StrictModel):
    fn: Optional[str] = None  # the task's reward (tasks: reward_fns); None: the task's default (lists: list_em)
    strict: bool = False  # the authors' strict training regex
    num_actors: int = Field(1, gt=0)
    num_cpus_per_actor: float = Field(0.1, gt=0)
    overlong: OverlongConfig = OverlongConfig()
    sandbox: SandboxRewardConfig = SandboxRewardConfig()  # tasks scored by running code (codegen)

    @field_validator("fn")
    @classmethod
    def _known_fn(cls, name: Optional[str]) -> Optional[str]:
        known = sorted({fn for task in TASKS.values() for fn in task.reward_fns} | set(REWARD_FNS))
        if name is not None and name not in known:
            raise ValueError(f"unknown reward fn {name!r}; known: {known}")
        return name


class SyncConfig(StrictModel):
    transport: Literal[TRANSPORTS] = "object_store"
    bucket_mb: float = Field(64.0, gt=0)
    timeout_s: float = Field(120.0, gt=0)


class RayConfig(StrictModel):
    address: Optional[str] = None  # None: attach if RAY_ADDRESS/a job is running, else start locally
    num_cpus: Optional[float] = None  # local start only
    temp_dir: Optional[str] = None  # local start only (default: a fresh /tmp/aletheia_ray_* directory)
