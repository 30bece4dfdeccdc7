"""Config sections of ``aletheia-testbed pipeline`` (``generation``, ``filter``); unknown keys are errors.

They are fields of ``TestbedConfig`` (``aletheia_ray/testbed/config.py``); ``configs/testbed_generate.yaml``
sets them. ``aletheia-testbed build`` ignores both.
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from aletheia_ray.config import StrictModel
from aletheia_ray.testbed.test_quality import MUTANTS


class GeneratorSpec(StrictModel):
    """One generator model: ``num_samples`` candidates per problem and language."""
    name: str = Field(min_length=1)  # the CANDIDATES `generator` column
    model: str = Field(min_length=1)  # embedded:tiny | embedded:smollm2 | a local HF model directory
    tier: Literal["weak", "strong"]
    num_samples: int = Field(4, ge=1)
    temperature: float = Field(0.8, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(512, ge=1)
    prompt_format: Literal["chat", "completion"] = "chat"  # completion: base models (gen_prompts.py)


class ReferenceGeneratorConfig(StrictModel):
    """The reference solution and its mutants (the filter's programs) as one more generator's candidates."""
    name: str = Field("reference", min_length=1)
    tier: Literal["weak", "strong"] = "weak"
    include_mutants: bool = True


class GenerationRolloutConfig(StrictModel):
    """The rollout pool (``actors/rollout.py`` ``RolloutPool``) each generator model runs on."""
    num_engines: int = Field(1, ge=1)
    num_cpus_per_engine: float = Field(1, gt=0)
    max_model_len: int = Field(2048, ge=64)
    kv_cache_gb: int = Field(1, ge=1)
    dtype: str = "float32"
    prompts_per_call: int = Field(16, ge=1)  # prompts per RolloutPool.generate call (one engine-call batch)


class GenerationConfig(StrictModel):
    generators: list[GeneratorSpec] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=lambda: ["python"])  # x each problem's test languages
    reference: Optional[ReferenceGeneratorConfig] = Field(default_factory=ReferenceGeneratorConfig)
    rollout: GenerationRolloutConfig = Field(default_factory=GenerationRolloutConfig)
    max_problems: Optional[int] = Field(None, ge=1)  # first N problems (file order); None: all
    cache: str = "generation_cache.jsonl"  # relative paths live under the output directory

    @model_validator(mode="after")
    def _unique_names(self):
        names = [g.name for g in self.generators] + ([self.reference.name] if self.reference else [])
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"generator names must be unique (generators[].name, reference.name): {dup}")
        return self


class TestQualityFilterConfig(StrictModel):
    enabled: bool = True
    min_tpr: float = Field(1.0, ge=0, le=1)  # share of reference programs that must pass every test
    min_tnr: float = Field(0.6, ge=0, le=1)  # share of known-bad mutants that must fail a test
    mutants: list[str] = Field(default_factory=lambda: list(MUTANTS))
    drop_unfiltered: bool = False  # drop problems without a reference or without mutants

    @model_validator(mode="after")
    def _known(self):
        unknown = sorted(set(self.mutants) - set(MUTANTS))
        if unknown:
            raise ValueError(f"filter.mutants: unknown {unknown}; known: {list(MUTANTS)}")
        return self


TestQualityFilterConfig.__test__ = False
