"""Cost model of a training run: devices it reserves and dollars per training step.

The paper prices training at $10.6 per H200-hour; cost per step = devices x step seconds / 3600 x
price per device-hour. ``devices_of`` reads a run's resolved ``config.yaml`` (a plain dict; a
missing key takes the schema default of ``aletheia_ray.actor_config``):

GPU runs (any GPU reserved):
    rollout.num_engines x rollout.num_gpus_per_engine
    + learner.num_ranks x learner.num_gpus_per_rank
    + reference.num_gpus (when the reference actor runs)
  or, with ``colocate.enabled`` (rollout and learner share bundles):
    learner.num_ranks x colocate.num_gpus_per_bundle
CPU runs (no GPU): the CPUs the run's actors reserve:
    rollout.num_engines x rollout.num_cpus_per_engine + learner.num_ranks x learner.num_cpus_per_rank
    + reference.num_cpus (when it runs) + reward actors (reward.num_actors x num_cpus_per_actor, or
    the sandbox pool's for data.kind codegen); with ``colocate.enabled`` (CPU bundles):
    learner.num_ranks x colocate.num_cpus_per_bundle + reward actors.
The reference actor runs when ``reference.enabled`` and the algorithm's KL setting (e.g. ``beta``)
is > 0, and always for DPO (``aletheia_ray.algorithms.registry``). The CPU price is an assumption
(on-demand cloud vCPU-hour, order of magnitude), not a measurement: pass your own.
"""
from __future__ import annotations

from typing import Any, Optional

H200_USD_PER_HOUR = 10.6  # the paper's price of one H200-hour
CPU_USD_PER_HOUR = 0.045  # assumed: one on-demand cloud vCPU-hour (e.g. AWS c7i, us-east-1, 2024)

_DEFAULTS = {
    "rollout": {"num_engines": 1, "num_gpus_per_engine": 0.0, "num_cpus_per_engine": 1.0},
    "learner": {"num_ranks": 2, "num_gpus_per_rank": 0.0, "num_cpus_per_rank": 1.0},
    "reference": {"enabled": True, "num_gpus": 0.0, "num_cpus": 1.0},
    "reward": {"num_actors": 1, "num_cpus_per_actor": 0.1},
    "colocate": {"enabled": False, "num_gpus_per_bundle": 1.0, "num_cpus_per_bundle": 1.0},
}


def _get(cfg: dict, section: str, key: str) -> Any:
    sec = cfg.get(section) or {}
    if not isinstance(sec, dict):
        raise ValueError(f"config section {section!r} is a {type(sec).__name__}, expected a mapping")
    if key in sec:
        return sec[key]
    if key in _DEFAULTS.get(section, {}):
        return _DEFAULTS[section][key]
    raise ValueError(f"config key {section}.{key} is missing")


def _num(cfg: dict, section: str, key: str) -> float:
    value = _get(cfg, section, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"config key {section}.{key} must be a number >= 0, got {value!r}")
    return float(value)


def reference_used(cfg: dict) -> bool:
    """Whether the run starts the reference actor (as ``TrainConfig.use_reference``)."""
    from aletheia_ray.algorithms.registry import ALGORITHMS

    algo = cfg.get("algorithm") or {}
    loss = algo.get("loss", "grpo")
    if loss not in ALGORITHMS:
        raise ValueError(f"config key algorithm.loss: unknown algorithm {loss!r}; known: {sorted(ALGORITHMS)}")
    entry = ALGORITHMS[loss]
    if entry.offline_data == "preference_pairs":
        return True
    settings = {**entry.defaults(), **{k: v for k, v in algo.items() if v is not None}}
    return bool(_get(cfg, "reference", "enabled")) and entry.uses_reference(settings)


def _reward_cpus(cfg: dict) -> float:
    data = cfg.get("data") or {}
    if data.get("kind") == "codegen":  # scored by running code: the sandbox pool
        sandbox = (cfg.get("reward") or {}).get("sandbox") or {}
        count, each = sandbox.get("num_actors", 2), float(sandbox.get("num_cpus_per_actor", 0.5))
        if count == "auto":
            raise ValueError("config key reward.sandbox.num_actors is 'auto' (one actor per free CPU, decided at "
                             "start): the reserved CPUs are not in the config; set a number to price the run")
        return float(count) * each
    return _num(cfg, "reward", "num_actors") * _num(cfg, "reward", "num_cpus_per_actor")


def devices_of(cfg: dict) -> tuple[str, float]:
    """``("GPU", n)`` when the run reserves GPUs, else ``("CPU", n)``: see the module docstring."""
    if not isinstance(cfg, dict):
        raise ValueError(f"a run config must be a mapping, got {type(cfg).__name__}")
    ranks = _num(cfg, "learner", "num_ranks")
    colocated = bool(_get(cfg, "colocate", "enabled"))
    ref = reference_used(cfg)
    if colocated:
        gpus = ranks * _num(cfg, "colocate", "num_gpus_per_bundle")
    else:
        gpus = (_num(cfg, "rollout", "num_engines") * _num(cfg, "rollout", "num_gpus_per_engine")
                + ranks * _num(cfg, "learner", "num_gpus_per_rank")
                + (_num(cfg, "reference", "num_gpus") if ref else 0.0))
    if gpus > 0:
        return "GPU", gpus
    if colocated:  # CPU bundles (num_gpus_per_bundle 0); the reward actors sit outside the group
        return "CPU", ranks * _num(cfg, "colocate", "num_cpus_per_bundle") + _reward_cpus(cfg)
    cpus = (_num(cfg, "rollout", "num_engines") * _num(cfg, "rollout", "num_cpus_per_engine")
            + ranks * _num(cfg, "learner", "num_cpus_per_rank")
            + (_num(cfg, "reference", "num_cpus") if ref else 0.0)
            + _reward_cpus(cfg))
    return "CPU", cpus


def default_price(kind: str) -> float:
    if kind not in ("GPU", "CPU"):
        raise ValueError(f"device kind must be 'GPU' or 'CPU', got {kind!r}")
    return H200_USD_PER_HOUR if kind == "GPU" else CPU_USD_PER_HOUR


def device_hours_per_step(step_s: float, count: float) -> float:
    if step_s < 0 or count < 0:
        raise ValueError(f"step seconds and device count must be >= 0, got {step_s}, {count}")
    return count * step_s / 3600.0


def cost_per_step(step_s: float, kind: str, count: float, price_per_hour: Optional[float] = None) -> float:
    """Dollars per training step: ``count`` devices for ``step_s`` seconds at ``price_per_hour``
    each (default: $10.6 per H200-hour for GPUs, ``CPU_USD_PER_HOUR`` per CPU)."""
    price = default_price(kind) if price_per_hour is None else float(price_per_hour)
    if price < 0:
        raise ValueError(f"price per hour must be >= 0, got {price}")
    return device_hours_per_step(step_s, count) * price


def price_label(kind: str, price_per_hour: Optional[float] = None) -> str:
    """How a cost was priced, for axis labels and tables."""
    price = default_price(kind) if price_per_hour is None else float(price_per_hour)
    unit = "H200-hour" if kind == "GPU" else "CPU-hour"
    return f"{kind}-hours x ${price:g}/{unit}"
