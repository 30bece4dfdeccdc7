"""Schema of a training config (``aletheia-train --config X.yaml [dotted.overrides]``).

Every section maps onto the keyword arguments of one stage (the controller does the mapping):
``model`` -> model resolution, ``rollout`` -> ``RolloutPool``, ``learner`` -> ``LearnerGroup``,
``reference`` -> ``ReferenceActor``, ``reward`` -> ``RewardPool``, ``sync`` -> ``WeightSync``,
``algorithm`` -> the registry entry (``aletheia_ray.algorithms.registry``: loss, settings,
advantages, reference), ``data.kind`` -> the task (``aletheia_ray.tasks``), ``trainer`` -> the loop,
``cold_start`` -> SFT before RL. Every allowed-value list comes from the module that owns it.
The actor pools' sections live in ``actor_config.py``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import ConfigDict, Field, field_validator, model_validator

from aletheia_ray.actor_config import (LearnerConfig, RayConfig, ReferenceConfig, RewardConfig, RolloutConfig,
                                       SyncConfig)
from aletheia_ray.algorithms.registry import ALGORITHMS, Algorithm, SettingError, get_algorithm
from aletheia_ray.algorithms.schedules import warmup_steps
from aletheia_ray.causal_lm import ATTN_IMPLEMENTATIONS, DTYPES
from aletheia_ray.config import StrictModel, key_error
from aletheia_ray.placement import (ColocateConfig, ColocatedPlan, check_colocation, colocated_rows,
                                    colocation_plan)
from aletheia_ray.prompts import STYLES
from aletheia_ray.sync.modes import SYNC_MODES, SyncPolicy, make_sync_policy
from aletheia_ray.tasks import TASKS, Task, get_task
from aletheia_ray.tracking import WANDB_MODES

PositiveInt = Field(gt=0)
REPO_ROOT = Path(__file__).resolve().parent.parent


def resolve_input_path(value: str, key: str) -> str:
    """A relative path resolved against the working directory, then the repo root (an error if in
    neither). An absolute path is kept as given: it may exist only on the cluster's driver node,
    so the trainer checks it when it loads the data."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    tried = [Path.cwd() / path, REPO_ROOT / path]
    for candidate in tried:
        if candidate.exists():
            return str(candidate.resolve())
    raise ValueError(f"{key}: file {value!r} not found (looked at {', '.join(str(t) for t in tried)})")


class ModelConfig(StrictModel):
    path: str = "embedded:tiny"  # a HF directory or "embedded:tiny" / "embedded:smollm2"
    cache_dir: Optional[str] = None  # where embedded models are built (default: the models' cache)
    dtype: Literal[tuple(DTYPES)] = "float32"  # what the learner and reference load (float16: no loss scaling)
    attn_implementation: Literal[ATTN_IMPLEMENTATIONS] = "sdpa"
    max_model_len: int = Field(2048, gt=0)  # prompt + response tokens


class SyntheticDataConfig(StrictModel):
    num_lists: int = Field(256, gt=0)
    num_candidates: list[int] = [2]
    repeats: int = Field(6, gt=0)  # how often the correct candidate prints its letter
    seed: int = 0


class DataConfig(StrictModel):
    kind: Literal[tuple(TASKS)] = "lists"  # the task (aletheia_ray.tasks): lists | synthetic | pairs | codegen
    train_path: Optional[str] = None  # JSONL/parquet of verifier lists (lists, pairs) | JSONL(.gz) of problems (codegen)
    prompt_style: Literal[STYLES] = "think"
    shuffle: bool = True  # a fresh permutation per epoch, seeded by (seed, epoch)
    # kind: lists. Keep only lists with these candidate counts / prompts of at most this many tokens
    # (dropped lists are counted in the log and summary; without the token limit a prompt over
    # model.max_model_len - rollout.max_new_tokens is an error).
    num_candidates: Optional[list[int]] = None
    max_prompt_tokens: Optional[int] = Field(None, gt=0)
    synthetic: SyntheticDataConfig = SyntheticDataConfig()
    max_call_inputs: int = Field(60, gt=0)  # kind: codegen: call tests per HumanEval+ problem (base, then plus)

    @field_validator("train_path")
    @classmethod
    def _existing_path(cls, value: Optional[str]) -> Optional[str]:
        return None if value is None else resolve_input_path(value, "data.train_path")

    @model_validator(mode="after")
    def _needs_path(self):
        if get_task(self.kind).needs_train_path and not self.train_path:
            raise ValueError(f"data.train_path is required when data.kind is {self.kind!r}")
        return self

    @property
    def task(self) -> Task:
        return get_task(self.kind)


class DynamicSamplingConfig(StrictModel):
    """DAPO dynamic sampling (``aletheia_ray/dynamic_sampling.py``): drop prompt groups whose rewards
    all agree and generate more rounds of prompts until ``prompts_per_step`` groups are left."""

    enabled: bool = False
    max_extra_rounds: int = Field(3, ge=0)  # generation rounds after the step's own; then train on what was kept


class AlgorithmConfig(StrictModel):
    """``loss`` names the algorithm (``aletheia_ray.algorithms.registry.ALGORITHMS``); its settings
    (e.g. ``eps_low``, ``eps_high``, ``beta`` for grpo) are further keys of this section, checked
    against the registry entry and filled with its defaults; any other key is an error. A key set
    to null is unset (dropped), so a config can switch algorithm over a base file's settings."""
    model_config = ConfigDict(extra="allow")

    loss: str = "grpo"
    samples_per_prompt: int = Field(16, gt=0)
    prompts_per_step: int = Field(64, gt=0)
    norm_adv_by_std: bool = True
    sync_mode: Literal[SYNC_MODES] = "on_policy"  # see sync/modes.py
    updates_per_generation: int = Field(1, gt=0)  # batch_online: optimizer updates per generated batch (BO-GRPO: 4)
    tis_cap: Optional[float] = None  # TIS weight cap C (sync/modes.py checks it); None: off, except 2.0 (the paper's) in async_tis
    dynamic_sampling: DynamicSamplingConfig = DynamicSamplingConfig()

    @field_validator("loss")
    @classmethod
    def _known_algorithm(cls, name: str) -> str:
        if name not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {name!r}; known algorithms: {sorted(ALGORITHMS)}")
        return name

    @model_validator(mode="after")
    def _algorithm_settings(self):
        # null means unset: a config switching algorithm over a base file (raft.yaml over grpo_think.yaml)
        # writes `beta: null` to drop a setting the new algorithm does not take
        given = {k: v for k, v in (self.__pydantic_extra__ or {}).items() if v is not None}
        self.__pydantic_extra__.clear()
        try:
            self.__pydantic_extra__.update(self.entry.check_settings(given))
        except SettingError as e:
            raise key_error(e.key, given.get(e.key), str(e)) from None
        return self

    @model_validator(mode="after")
    def _dynamic_sampling_fits(self):
        if not self.dynamic_sampling.enabled:
            return self
        key = "dynamic_sampling.enabled"
        if self.entry.advantage is None:
            raise key_error(key, True, f"dynamic sampling keeps prompt groups whose rewards differ (a non-zero "
                                       f"advantage); algorithm.loss={self.loss!r} has no advantages (its loss or "
                                       f"sample filter uses the rewards as they are)")
        if self.sync_mode == "async_tis":
            raise key_error(key, True, "dynamic sampling cannot run with algorithm.sync_mode=async_tis: its extra "
                                       "generation rounds would come from newer weights than the batch generated "
                                       "ahead, and would block the step async_tis overlaps (use on_policy or "
                                       "batch_online)")
        if self.samples_per_prompt < 2:
            raise key_error(key, True, f"dynamic sampling needs algorithm.samples_per_prompt >= 2 (a group of "
                                       f"{self.samples_per_prompt} sample never has differing rewards)")
        return self

    @property
    def entry(self) -> Algorithm:
        return get_algorithm(self.loss)

    @property
    def settings(self) -> dict[str, Any]:
        """The algorithm's settings (defaults filled in)."""
        return {k: v for k, v in (self.__pydantic_extra__ or {}).items() if k in self.entry.settings}


class ColdStartConfig(StrictModel):
    """Supervised warm start on the same learner group, before RL (NLL on formatted verdicts)."""

    enabled: bool = False
    steps: int = Field(20, gt=0)
    prompts_per_step: int = Field(32, gt=0)
    # "correct": the right verdict; "random_letter": a uniformly random letter in the right
    # format (teaches the format only, so RL starts near chance: the learning test uses it).
    # data.kind codegen: "correct" = the row's reference solution, "stub" = a runnable program with the
    # task's interface that solves nothing (format only: a ```python block), in a ```python block.
    targets: str = "correct"  # one of the task's cold_start_targets (checked against data.kind)
    reasoning: str = "I compared the candidates."  # think style: text before </think>
    lr: Optional[float] = Field(None, gt=0)  # its own peak learning rate; None: learner.lr


class EvaluationConfig(StrictModel):
    """Held-out evaluation on the rollout pool, sampled like the paper (T 0.6, top-p 0.95, k samples):
    after the last step and every ``every_steps`` steps, logged as ``eval/*`` in that step's record
    (``aletheia_ray/eval_schedule.py``); checkpoints/best.json names the best checkpoint by ``metric``."""

    enabled: bool = False
    every_steps: int = Field(0, ge=0)  # 0: only after the last step
    # held-out items: data.kind synthetic makes its own (lists of another seed) unless this is set;
    # lists | pairs: a verifier-lists JSONL/parquet; codegen: a problems JSONL(.gz)
    data_path: Optional[str] = None
    num_lists: int = Field(64, gt=0)  # synthetic: lists made; data_path: the first N items kept by the data filters
    num_samples: int = Field(1, gt=0)  # k per item: eval/<accuracy> is the mean over them, + SC@k / pass@k if k > 1
    temperature: float = Field(0.6, gt=0)
    top_p: float = Field(0.95, gt=0, le=1)
    metric: Optional[str] = None  # marks the best checkpoint; None: the task's accuracy (eval/list_acc, ...)
    mode: Literal["max", "min"] = "max"

    @field_validator("data_path")
    @classmethod
    def _existing_eval_path(cls, value: Optional[str]) -> Optional[str]:
        return None if value is None else resolve_input_path(value, "evaluation.data_path")

    @model_validator(mode="after")
    def _every_needs_enabled(self):
        if self.every_steps and not self.enabled:
            raise key_error("every_steps", self.every_steps, "evaluation.every_steps needs evaluation.enabled=true")
        return self


class PreferenceConfig(StrictModel):
    """Offline algorithms (``algorithm.loss`` dpo | sft_chosen): the Aletheia-DPO data generated once on
    the rollout pool from the policy training starts from, scored with ListEM, paired
    (``aletheia_ray.preference``), scored by the reference actor, then trained on for
    ``trainer.total_steps`` optimizer steps of ``pairs_per_step`` pairs (epochs reshuffled)."""

    samples_per_list: int = Field(100, gt=0)  # paper: 100 at T = 1.0
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    pairs_per_list: int = Field(4, gt=0)
    pairs_per_step: int = Field(32, gt=0)  # pairs per optimizer step (sft_chosen: responses per step)
    # an existing PAIR file (aletheia-testbed dpo, or <output_dir>/preference/pairs.jsonl of an earlier run):
    # generation is skipped; reference logprobs are computed if it has none
    pairs_path: Optional[str] = None

    @field_validator("pairs_path")
    @classmethod
    def _existing_pairs(cls, value: Optional[str]) -> Optional[str]:
        return None if value is None else resolve_input_path(value, "preference.pairs_path")


class TrainerConfig(StrictModel):
    total_steps: int = Field(10, gt=0)  # RL steps (one optimizer update each in on-policy mode)
    save_steps: int = Field(0, ge=0)  # checkpoint + HF export every N steps (0 = only at the end)
    save_final: bool = True
    resume: bool = False  # continue from the latest checkpoint in output_dir
    stop_after_steps: Optional[int] = Field(None, gt=0)  # end this process early (pre-emption drill)
    # after a checkpoint is complete, delete older complete ones beyond the newest keep_last (None: keep all)
    keep_last: Optional[int] = Field(None, ge=1)


class LoggingConfig(StrictModel):
    wandb: Literal[WANDB_MODES] = "auto"  # auto: online iff WANDB_API_KEY
    project: str = "aletheia_ray"
    run_name: Optional[str] = None
    progress: bool = True  # per-step console line on stderr


class TrainConfig(StrictModel):
    output_dir: str
    seed: int = 0
    model: ModelConfig = ModelConfig()
    data: DataConfig
    rollout: RolloutConfig = RolloutConfig()
    learner: LearnerConfig = LearnerConfig()
    reference: ReferenceConfig = ReferenceConfig()
    reward: RewardConfig = RewardConfig()
    algorithm: AlgorithmConfig = AlgorithmConfig()
    sync: SyncConfig = SyncConfig()
    cold_start: ColdStartConfig = ColdStartConfig()
    preference: PreferenceConfig = PreferenceConfig()
    trainer: TrainerConfig = TrainerConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    logging: LoggingConfig = LoggingConfig()
    ray: RayConfig = RayConfig()
    colocate: ColocateConfig = ColocateConfig()  # one placement group for every GPU role (placement.py)

    # Field validators (not the model validator below) so that errors name the key and its file.
    @field_validator("reward")
    @classmethod
    def _reward_fits_task(cls, reward: RewardConfig, info) -> RewardConfig:
        data = info.data.get("data")  # validated before reward (field order); absent if it was invalid
        if data is not None and reward.fn is not None and reward.fn not in data.task.reward_fns:
            kinds = [kind for kind, task in TASKS.items() if reward.fn in task.reward_fns]
            elsewhere = f" (data.kind {' or '.join(kinds)} trains it)" if kinds else ""
            raise key_error("fn", reward.fn, f"reward fn {reward.fn!r} cannot be trained on data.kind {data.kind!r}: "
                                             f"it trains with {list(data.task.reward_fns)}{elsewhere}")
        return reward

    @field_validator("cold_start")
    @classmethod
    def _cold_start_targets_fit_task(cls, cold_start: ColdStartConfig, info) -> ColdStartConfig:
        data = info.data.get("data")
        if data is None or not cold_start.enabled:
            return cold_start
        allowed = data.task.cold_start_targets
        if cold_start.targets not in allowed:
            raise ValueError(f"cold_start.targets {cold_start.targets!r} does not fit data.kind {data.kind!r}; "
                             f"use one of {allowed}")
        return cold_start

    @field_validator("evaluation")
    @classmethod
    def _evaluation_fits_task(cls, evaluation: EvaluationConfig, info) -> EvaluationConfig:
        data = info.data.get("data")
        if data is None or not evaluation.enabled:
            return evaluation
        keys = data.task.eval_keys(evaluation.num_samples)
        if evaluation.metric is None:
            evaluation.metric = keys[0]
        elif evaluation.metric not in keys:
            raise key_error("metric", evaluation.metric, f"evaluation.metric {evaluation.metric!r} is not reported by "
                                                         f"data.kind {data.kind!r} with evaluation.num_samples="
                                                         f"{evaluation.num_samples}; it reports {list(keys)}")
        return evaluation

    @model_validator(mode="after")
    def _consistent(self):
        if self.reward.overlong.enabled and self.reward.overlong.cache > self.rollout.max_new_tokens:
            raise ValueError(f"reward.overlong.cache ({self.reward.overlong.cache}) must not exceed "
                             f"rollout.max_new_tokens ({self.rollout.max_new_tokens})")
        for key, budget in (("learner", self.learner.max_tokens_per_micro_batch),
                            ("reference", self.reference.max_tokens_per_micro_batch)):
            if budget is not None and budget < self.model.max_model_len:
                raise ValueError(f"{key}.max_tokens_per_micro_batch ({budget}) must be >= model.max_model_len "
                                 f"({self.model.max_model_len}): a whole sequence must fit in one micro-batch")
        if self.rollout.max_new_tokens >= self.model.max_model_len:
            raise ValueError(f"rollout.max_new_tokens ({self.rollout.max_new_tokens}) must be below "
                             f"model.max_model_len ({self.model.max_model_len})")
        a = self.algorithm
        if a.entry.offline_data is not None:
            self._check_offline()
        e = self.evaluation  # after the offline check: its error names the real problem of such a config
        if e.enabled and e.data_path is None and not self.data.task.has_heldout:
            raise ValueError(f"evaluation.enabled: data.kind {self.data.kind!r} has no held-out set of its own; "
                             "set evaluation.data_path to a held-out file")
        policy = make_sync_policy(a.sync_mode, a.updates_per_generation, a.tis_cap)  # errors name the key
        if a.prompts_per_step < policy.updates_per_generation:
            raise ValueError(f"algorithm.updates_per_generation ({a.updates_per_generation}) mini-batches of whole "
                             f"prompt groups need algorithm.prompts_per_step >= it (got {a.prompts_per_step})")
        if policy.tis_cap is not None and not a.entry.takes_tis:
            takes = sorted(name for name, entry in ALGORITHMS.items() if entry.takes_tis)
            raise ValueError(f"TIS (algorithm.sync_mode={a.sync_mode}, algorithm.tis_cap) is applied by the loss of "
                             f"{takes}; algorithm.loss={a.loss!r} has no TIS weights")
        if self.colocate.enabled:
            check_colocation(self)  # errors name the colocate.* / rollout.* / learner.* keys
        return self

    def _check_offline(self) -> None:
        """An offline algorithm pairs ListEM-scored verdicts on lists, and makes no RL steps."""
        a, fn = self.algorithm, self.data.task.reward_fn(self)
        if fn != "list_em" or self.data.kind not in ("lists", "synthetic"):
            raise ValueError(f"algorithm.loss={a.loss!r} trains on ListEM-scored verdicts on verifier lists "
                             f"(data.kind lists or synthetic, reward.fn list_em); got data.kind={self.data.kind!r}, "
                             f"reward.fn={fn!r}")
        if a.sync_mode != "on_policy":
            raise ValueError(f"algorithm.sync_mode={a.sync_mode!r}: algorithm.loss={a.loss!r} is offline (its data is "
                             "generated once), it has no sync mode; leave algorithm.sync_mode=on_policy")

    @property
    def sync_policy(self) -> SyncPolicy:
        a = self.algorithm
        return make_sync_policy(a.sync_mode, a.updates_per_generation, a.tis_cap)

    def actor_layout(self) -> list[dict[str, Any]]:
        """What the run will start: one row per actor role with its count and CPUs/GPUs each
        (``aletheia-train --dry-run`` prints it; the sandbox pool's ``auto`` size is decided at start)."""
        r, l, ref, rw = self.rollout, self.learner, self.reference, self.reward
        rows = [{"role": "rollout engine (vLLM)", "count": r.num_engines, "cpus": r.num_cpus_per_engine,
                 "gpus": r.num_gpus_per_engine, "note": f"tensor_parallel_size={r.tensor_parallel_size}"},
                {"role": "learner rank (DeepSpeed)", "count": l.num_ranks, "cpus": l.num_cpus_per_rank,
                 "gpus": l.num_gpus_per_rank, "note": f"ZeRO-{l.zero_stage}, {l.backend}"}]
        if self.use_reference and self.algorithm.entry.offline_data == "preference_pairs":
            rows.append({"role": "reference", "count": 1, "cpus": ref.num_cpus, "gpus": ref.num_gpus,
                         "note": "scores the pairs once, then stops"})
        elif self.use_reference:
            rows.append({"role": "reference", "count": 1, "cpus": ref.num_cpus, "gpus": ref.num_gpus,
                         "note": f"re-sync every {ref.sync_steps} steps" if ref.sync_steps else "never re-synced"})
        scorer = self.data.task.scorer(self)
        if scorer.runs_code:
            s = rw.sandbox
            rows.append({"role": "sandbox actor", "count": s.num_actors, "cpus": s.num_cpus_per_actor, "gpus": 0.0,
                         "note": f"backend={s.backend}"})
        else:
            rows.append({"role": "reward actor", "count": rw.num_actors, "cpus": rw.num_cpus_per_actor, "gpus": 0.0,
                         "note": f"reward.fn={scorer.fn}"})
        return colocated_rows(rows, self.colocated_plan()) if self.colocate.enabled else rows

    def colocated_plan(self) -> ColocatedPlan:
        """Who sits in which bundle of the shared placement group (``colocate.enabled``; placement.py)."""
        return colocation_plan(self)

    @property
    def use_reference(self) -> bool:
        if self.algorithm.entry.offline_data == "preference_pairs":
            return True  # DPO's precomputed reference logprobs (reference.enabled does not apply)
        return self.reference.enabled and self.algorithm.entry.uses_reference(self.algorithm.settings)

    @property
    def total_updates(self) -> int:
        """Optimizer updates of the whole run: cold-start steps + RL updates."""
        cold = self.cold_start.steps if self.cold_start.enabled else 0
        return cold + self.trainer.total_steps * self.sync_policy.updates_per_generation

    @property
    def warmup_steps(self) -> int:
        return warmup_steps(self.total_updates, self.learner.warmup_ratio)
