"""The algorithm registry: one entry per algorithm, the only module to touch to add one.

An entry (``Algorithm``) holds its loss function, its settings (the loss's keyword-only arguments
with their defaults and types: each is the config key ``algorithm.<name>``), its advantage
estimator, whether it needs the reference actor (``reference_setting``: a KL coefficient, the
reference runs iff it is > 0) and old-policy logprobs, and an optional sample filter applied to a
generated batch before it becomes a training batch (RAFT: at most 5 positives per prompt group).
An offline algorithm (``offline_data`` set: DPO-Think and its SFT baseline) trains on a dataset
generated once by the policy it starts from (``actors/preference_trainer.py``) instead of RL steps;
``rows_per_unit`` rows stay together in every shard and micro-batch (DPO: chosen, rejected).

    @register_algorithm("my_loss", advantage="grpo", reference_setting="beta")
    def my_loss(logprobs, batch, *, global_num_tokens, global_num_sequences, beta: NonNegative = 0.0):
        ...  # -> (loss, metrics), e.g. through losses.regularized_loss

The config checks ``algorithm.loss`` and every setting at load time (``TrainConfig``), before Ray
starts, naming the valid choices; the learner calls ``algorithm.loss`` with the settings.
"""
from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Optional, Sequence

import torch
from pydantic import Field, TypeAdapter, ValidationError

from aletheia_ray.algorithms.advantages import ADVANTAGE_ESTIMATORS
from aletheia_ray.algorithms.losses import (dpo_sigmoid_loss, grpo_policy_loss, gspo_policy_loss, masked_sum_rows,
                                            nll_loss, tis_weights)
from aletheia_ray.batch import TrainBatch

NonNegative = Annotated[float, Field(ge=0)]
PositiveInt = Annotated[int, Field(gt=0)]
COUNT_ARGS = ("global_num_tokens", "global_num_sequences")  # given by the learner, never settings
SYNC_ARGS = ("tis_cap",)  # given by the sync mode (algorithm.tis_cap / async_tis), not a loss setting


class SettingError(ValueError):
    """A setting the algorithm does not take, or a bad value for one (``key`` names it)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Algorithm:
    name: str
    loss: Callable  # (logprobs, batch, *, global_num_tokens, global_num_sequences, **settings) -> (loss, metrics)
    advantage: Optional[str]  # key of ADVANTAGE_ESTIMATORS; None: rewards select samples, no advantages
    reference_setting: Optional[str]  # the KL coefficient: the reference actor runs iff it is > 0
    needs_old_logprobs: bool  # a ratio to the policy that generated (False: NLL-type losses)
    sample_filter: Optional[Callable] = None  # (rewards, group_ids, **its settings) -> (kept rows, metrics)
    settings: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # name -> (type, default)
    offline_data: Optional[str] = None  # one of OFFLINE_DATA: trained on data generated once, not RL steps
    rows_per_unit: int = 1  # consecutive rows no shard or micro-batch splits (DPO: 2, chosen then rejected)

    @property
    def takes_tis(self) -> bool:
        return "tis_cap" in inspect.signature(self.loss).parameters

    def defaults(self) -> dict[str, Any]:
        return {name: default for name, (_, default) in self.settings.items()}

    def check_settings(self, given: dict[str, Any]) -> dict[str, Any]:
        """Every setting, defaults filled in and values validated; a key the algorithm does not take
        or a bad value is a ``ValueError`` naming ``algorithm.<key>`` and the valid settings."""
        unknown = sorted(set(given) - set(self.settings))
        if unknown:
            raise SettingError(unknown[0], f"algorithm {self.name!r} (algorithm.loss) does not take setting "
                                           f"{unknown[0]!r}; its settings: {sorted(self.settings) or 'none'}")
        out = self.defaults()
        for key, value in given.items():
            try:
                out[key] = TypeAdapter(self.settings[key][0]).validate_python(value)
            except ValidationError as e:
                raise SettingError(key, f"{e.errors()[0]['msg']} (a setting of algorithm {self.name!r})") from None
        return out

    def uses_reference(self, settings: dict[str, Any]) -> bool:
        return self.reference_setting is not None and settings.get(self.reference_setting, 0) > 0

    def loss_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        """The settings the loss function takes (not its sample filter's)."""
        params = inspect.signature(self.loss).parameters
        return {k: v for k, v in settings.items() if k in params}

    def filter_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        params = inspect.signature(self.sample_filter).parameters if self.sample_filter else {}
        return {k: v for k, v in settings.items() if k in params}


ALGORITHMS: dict[str, Algorithm] = {}
# what an offline algorithm trains on, built from N samples per list scored with ListEM (preference.py)
OFFLINE_DATA = {"preference_pairs": "(chosen, rejected) rows of each pair, with precomputed reference logprobs",
                "chosen_samples": "the chosen (correct) responses of the same pairs, once each"}


def _keyword_settings(fn: Optional[Callable], skip: Sequence[str]) -> dict[str, tuple[Any, Any]]:
    if fn is None:
        return {}
    hints = typing.get_type_hints(fn, include_extras=True)
    return {name: (hints.get(name, Any), p.default) for name, p in inspect.signature(fn).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in skip}


def register_algorithm(name: str, *, advantage: Optional[str] = "grpo", reference_setting: Optional[str] = None,
                       needs_old_logprobs: bool = True, sample_filter: Optional[Callable] = None,
                       offline_data: Optional[str] = None, rows_per_unit: int = 1):
    """Decorator registering ``fn`` as the loss of algorithm ``name`` (see the module docstring)."""
    if advantage is not None and advantage not in ADVANTAGE_ESTIMATORS:
        raise KeyError(f"unknown advantage estimator {advantage!r}; known: {sorted(ADVANTAGE_ESTIMATORS)}")
    if offline_data is not None and offline_data not in OFFLINE_DATA:
        raise KeyError(f"unknown offline data {offline_data!r}; known: {sorted(OFFLINE_DATA)}")

    def register(fn: Callable) -> Callable:
        settings = {**_keyword_settings(fn, (*COUNT_ARGS, *SYNC_ARGS)), **_keyword_settings(sample_filter, ())}
        if reference_setting is not None and reference_setting not in settings:
            raise ValueError(f"algorithm {name!r}: reference_setting {reference_setting!r} is not one of its "
                             f"settings {sorted(settings)}")
        ALGORITHMS[name] = Algorithm(name, fn, advantage, reference_setting, needs_old_logprobs, sample_filter,
                                     settings, offline_data, rows_per_unit)
        return fn

    return register


def get_algorithm(name: str) -> Algorithm:
    if name not in ALGORITHMS:
        raise KeyError(f"unknown loss {name!r} (algorithm.loss); known algorithms: {sorted(ALGORITHMS)}")
    return ALGORITHMS[name]


def check_loss_kwargs(name: str, loss_kwargs: dict) -> Algorithm:
    """The entry of ``name``; raise naming an unknown loss or keyword argument (learner-side check)."""
    algorithm = get_algorithm(name)
    allowed = set(inspect.signature(algorithm.loss).parameters) - {"logprobs", "batch", *COUNT_ARGS}
    unknown = set(loss_kwargs) - allowed
    if unknown:
        raise KeyError(f"unknown loss_kwargs {sorted(unknown)} for loss {name!r}; allowed: {sorted(allowed)}")
    return algorithm


def compute_loss(name: str, logprobs: torch.Tensor, batch: TrainBatch, *, global_num_tokens: float,
                 global_num_sequences: float, **loss_kwargs) -> tuple[torch.Tensor, dict[str, float]]:
    algorithm = check_loss_kwargs(name, loss_kwargs)
    return algorithm.loss(logprobs, batch, global_num_tokens=global_num_tokens,
                          global_num_sequences=global_num_sequences, **loss_kwargs)


# ---- the entries ---------------------------------------------------------------------------------

def _old_logprobs(logprobs: torch.Tensor, batch: TrainBatch) -> torch.Tensor:
    # On-policy with one update per batch: the old policy is the current one (ratio == 1).
    return logprobs.detach() if batch.old_logprobs is None else batch.old_logprobs


@register_algorithm("grpo", advantage="grpo", reference_setting="beta")
def grpo(logprobs, batch, *, global_num_tokens, global_num_sequences, eps_low: NonNegative = 0.2,
         eps_high: NonNegative = 0.28, beta: NonNegative = 1e-3, tis_cap: Optional[float] = None):
    """GRPO/DAPO; ``tis_cap`` (async_tis) turns on truncated importance sampling against rollout logprobs."""
    old = _old_logprobs(logprobs, batch)
    weights = None
    if tis_cap is not None:
        if batch.rollout_logprobs is None:
            raise ValueError("tis_cap is set but the batch has no rollout_logprobs")
        weights = tis_weights(old, batch.rollout_logprobs, tis_cap)
    return grpo_policy_loss(logprobs, old, batch.advantages, batch.loss_mask, ref_logprobs=batch.ref_logprobs,
                            eps_low=eps_low, eps_high=eps_high, beta=beta, global_num_tokens=global_num_tokens,
                            token_weights=weights)


@register_algorithm("gspo", advantage="grpo", reference_setting="beta")
def gspo(logprobs, batch, *, global_num_tokens, global_num_sequences, eps_low: NonNegative = 3e-4,
         eps_high: NonNegative = 4e-4, beta: NonNegative = 0.0):
    """GSPO (sequence-level ratio), the batch-online loss."""
    return gspo_policy_loss(logprobs, _old_logprobs(logprobs, batch), batch.advantages, batch.loss_mask,
                            ref_logprobs=batch.ref_logprobs, eps_low=eps_low, eps_high=eps_high, beta=beta,
                            global_num_sequences=global_num_sequences)


@register_algorithm("sft", advantage=None, needs_old_logprobs=False)
def sft(logprobs, batch, *, global_num_tokens, global_num_sequences):
    """NLL on the given completions (the cold start)."""
    return nll_loss(logprobs, batch.loss_mask, global_num_tokens=global_num_tokens)


def keep_positives(rewards: Sequence[float], group_ids: Sequence[int], *,
                   max_positives_per_group: PositiveInt = 5) -> tuple[list[int], dict[str, float]]:
    """RAFT's selection: the first ``max_positives_per_group`` samples with reward > 0 of each prompt
    group (samples are i.i.d., so the first are a uniform choice)."""
    kept, per_group = [], {}
    for row, (reward, group) in enumerate(zip(rewards, group_ids)):
        per_group.setdefault(group, 0)
        if reward > 0 and per_group[group] < max_positives_per_group:
            per_group[group] += 1
            kept.append(row)
    empty = sum(1 for n in per_group.values() if n == 0)
    return kept, {"filter/kept_samples": float(len(kept)), "filter/kept_frac": len(kept) / max(len(rewards), 1),
                  "filter/groups_without_samples": float(empty)}


# RAFT: the SFT loss (NLL) on the kept positive samples; no KL, no reference, lr 2e-6 in the paper
register_algorithm("raft", advantage=None, needs_old_logprobs=False, sample_filter=keep_positives)(sft)


@register_algorithm("dpo", advantage=None, needs_old_logprobs=False, offline_data="preference_pairs",
                    rows_per_unit=2)
def dpo(logprobs, batch, *, global_num_tokens, global_num_sequences, beta: NonNegative = 0.1):
    """DPO-Think (sigmoid loss, beta 0.1 in the paper): rows 2k / 2k+1 are pair k's chosen / rejected
    response; ``batch.ref_sequence_logprobs`` holds their precomputed reference sequence logprobs."""
    if batch.ref_sequence_logprobs is None:
        raise ValueError("dpo needs precomputed reference logprobs (batch.ref_sequence_logprobs)")
    seq, ref = masked_sum_rows(logprobs, batch.loss_mask), batch.ref_sequence_logprobs
    return dpo_sigmoid_loss(seq[0::2], seq[1::2], ref[0::2], ref[1::2], beta=beta,
                            global_num_pairs=global_num_sequences / 2)


# Appendix E's baseline: SFT (NLL) on the correct sampled responses of the same generated data
register_algorithm("sft_chosen", advantage=None, needs_old_logprobs=False, offline_data="chosen_samples")(sft)
