"""Config schema of the testbed builder (``configs/testbed.yaml``); unknown keys are errors."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from aletheia_ray.config import StrictModel
from aletheia_ray.data.problems import ProblemsConfig
from aletheia_ray.testbed.pipeline_config import GenerationConfig, TestQualityFilterConfig

Tier = Literal["weak", "strong"]


class CandidatesConfig(StrictModel):
    default_generator: Optional[str] = None  # for rows without `generator` (nested scored format)
    default_language: Optional[str] = None  # for rows without `language`


class GeneratorsConfig(StrictModel):
    tiers: dict[str, Tier] = Field(default_factory=dict)  # generator name -> weak | strong
    default_tier: Optional[Tier] = None  # for generators missing from `tiers` (None: error)


class ListsConfig(StrictModel):
    easy_range: tuple[float, float] = (0.0, 0.5)  # wrong candidates' pass rates, inclusive
    hard_range: tuple[float, float] = (0.7, 0.9)
    lengths: list[int] = Field(default_factory=lambda: [2, 3, 4, 5])
    lists_per_length: int = Field(3, ge=1)  # per problem x generator x bucket x length
    max_code_chars: Optional[int] = Field(None, ge=1)  # drop longer candidates (paper: 800 tokens)

    @model_validator(mode="after")
    def _check(self):
        for name in ("easy_range", "hard_range"):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo <= hi < 1.0:
                raise ValueError(f"{name} must satisfy 0 <= lo <= hi < 1, got {(lo, hi)}")
        if not self.lengths or any(not 2 <= n <= 5 for n in self.lengths):
            raise ValueError(f"lengths must be list lengths in 2..5, got {self.lengths}")
        return self


class SplitsConfig(StrictModel):
    eval_problem_fraction: float = Field(0.5, gt=0, lt=1)  # problems reserved for evaluation
    train_size: int = Field(50_000, ge=1)  # Weak-Easy lists on training problems
    heldout_size: int = Field(2_000, ge=1)
    strong_size: int = Field(2_000, ge=1)
    hard_size: int = Field(2_000, ge=1)
    adv_size: int = Field(1_000, ge=0)  # adversarial.mode=combined: Heldout lists that get modifications
    # evaluation splits: "available" fills the target size even over (length, language) as far as
    # the pool allows; "exact" first cuts every group to the smallest one (smaller, exactly even)
    balance: Literal["available", "exact"] = "available"
    # evaluation splits: at most this many lists per (length, language) group (the authors' release
    # code subsamples 250 per group); None: no cap
    max_per_group: Optional[int] = Field(None, ge=1)


class AdversarialConfig(StrictModel):
    # per_modification (paper): every transform in positive + negative is applied to every Heldout
    # list, one Adv list per (modification, Heldout list); combined: `splits.adv_size` Heldout lists
    # each get one positive and one negative transform (rotating over the lists)
    mode: Literal["per_modification", "combined"] = "per_modification"
    lists_per_modification: Optional[int] = Field(None, ge=1)  # per_modification: None = every Heldout list
    positive: list[str] = Field(default_factory=lambda: [
        "authority", "egocentric", "external_reference", "bandwagon", "illusory_complexity",
        "self_declared_correctness"])
    negative: list[str] = Field(default_factory=lambda: [
        "minification", "misleading_comments", "identifier_renaming", "reverse_authority",
        "reverse_bandwagon", "self_declared_incorrectness"])
    verify_sample: int = Field(4, ge=0)  # Adv lists whose programs are all re-run in the sandbox
    verify_per_transform: int = Field(1, ge=0)  # + this many programs per (transform, language) used
    fail_on_mismatch: bool = True  # a verified variant that changes pass rate fails the build

    @model_validator(mode="after")
    def _known_transforms(self):
        from aletheia_ray.testbed.adversarial import ADV_TRANSFORMS

        for polarity in ("positive", "negative"):
            for name in getattr(self, polarity):
                if name not in ADV_TRANSFORMS or ADV_TRANSFORMS[name].polarity != polarity:
                    known = sorted(n for n, t in ADV_TRANSFORMS.items() if t.polarity == polarity)
                    raise ValueError(f"{polarity}: {name!r} is not a {polarity} transform; known: {known}")
        return self


class ExecutionConfig(StrictModel):
    backend: Literal["threads", "ray"] = "threads"
    workers: int = Field(2, ge=1)  # thread pool size (executor slots 0..workers-1) or Ray actors
    isolation: Literal["auto", "bwrap", "none"] = "auto"
    allow_unisolated: bool = False
    cache: str = "execution_cache.jsonl"  # relative paths live under the output directory


class StatsConfig(StrictModel):
    tokenizer: Optional[str] = None  # HF tokenizer dir for code length; None: regex tokens


class TestbedConfig(StrictModel):
    seed: int = 0
    source: str = ""  # written to every list's `source` column
    problems: ProblemsConfig = Field(default_factory=ProblemsConfig)
    candidates: CandidatesConfig = Field(default_factory=CandidatesConfig)
    generators: GeneratorsConfig = Field(default_factory=GeneratorsConfig)
    lists: ListsConfig = Field(default_factory=ListsConfig)
    splits: SplitsConfig = Field(default_factory=SplitsConfig)
    adversarial: AdversarialConfig = Field(default_factory=AdversarialConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    stats: StatsConfig = Field(default_factory=StatsConfig)
    dpo_pairs_per_list: int = Field(4, ge=1)
    dpo_style: Literal["think", "instruct"] = "think"
    # aletheia-testbed pipeline only (aletheia_ray/testbed/pipeline_config.py)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    filter: TestQualityFilterConfig = Field(default_factory=TestQualityFilterConfig)


TestbedConfig.__test__ = False  # not a pytest test class despite its name
