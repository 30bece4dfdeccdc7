"""Typed configuration: YAML files + dotted command-line overrides -> a pydantic model.

    cfg = load_config("configs/grpo_think.yaml", ["trainer.lr=1e-6"], schema=TrainConfig)

Layers, merged in order (later wins): the ``base:`` file chain (a key ``base: other.yaml``,
relative to the file that names it, merged before that file), the file itself, then the
overrides (parsed by ``OmegaConf.from_dotlist``, so values are YAML: ``x=[1,2]``, ``y=null``).
The merged tree is validated by ``schema``, a subclass of ``StrictModel`` (``extra="forbid"``).
Every problem raises ``ConfigError`` naming the full dotted key and where the key came from
(the file, or the override that set it), with a "did you mean" for misspelt keys.
"""
from __future__ import annotations

import difflib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, TypeVar, Union, get_args, get_origin

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

BASE_KEY = "base"

PathLike = Union[str, "os.PathLike[str]"]
M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A config file, key or override is wrong; the message says which and where."""


class StrictModel(BaseModel):
    """Base class for every config schema: unknown keys are errors, assignments re-validate."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True)


def load_config(path: Optional[PathLike], overrides: Sequence[str] = (), schema: type[M] = None) -> M:
    """Load ``path`` (or start empty when None), apply ``overrides``, validate into ``schema``."""
    if schema is None or not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        raise TypeError(f"load_config needs a pydantic model class as schema, got {schema!r}")
    layers: list[tuple[str, dict]] = []  # (source label, plain dict), lowest priority first
    if path is not None:
        layers.extend(_load_file_chain(Path(path), chain=()))
    layers.extend(_parse_overrides(overrides))

    merged = OmegaConf.create({})
    for label, data in layers:
        try:
            merged = OmegaConf.merge(merged, data)
            for key in _required_keys(data):  # `key: ???` marks a value the user must set, also over a base's
                OmegaConf.update(merged, key, "???", merge=False)
        except OmegaConfBaseException as e:
            key = getattr(e, "full_key", "") or "?"
            raise ConfigError(f"cannot merge key '{key}' from {label}: {_first_line(e)}") from None
    try:
        tree = OmegaConf.to_container(merged, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as e:  # `key: ???` in a file: the user must set it
        key = getattr(e, "full_key", "") or "?"
        raise ConfigError(f"missing required key '{key}' ({_origin(_provenance(layers), _split_key(key))}: '???'); "
                          f"pass '{key}=...'") from None
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", "") or "?"
        where = _origin(_provenance(layers), _split_key(key)) if key != "?" else _all_sources(layers)
        raise ConfigError(f"cannot resolve key '{key}' ({where}): {_first_line(e)}") from None

    try:
        return schema.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_explain(e, schema, _provenance(layers), _all_sources(layers))) from None


def config_to_dict(cfg: BaseModel) -> dict[str, Any]:
    """Plain, YAML-safe dict of a config (paths and enums become strings)."""
    return cfg.model_dump(mode="json")


def dump_config(cfg: BaseModel, path: PathLike) -> Path:
    """Write ``cfg`` as YAML (atomically) so ``load_config(path, schema=type(cfg))`` rebuilds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------- layers


def _load_file_chain(path: Path, chain: tuple[Path, ...]) -> list[tuple[str, dict]]:
    """The file's ``base:`` ancestors first, then the file itself."""
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in (*chain, resolved))
        raise ConfigError(f"config 'base:' chain has a cycle: {cycle}")
    data = _read_yaml_mapping(path, named_by=chain[-1] if chain else None)
    base = data.pop(BASE_KEY, None)
    layers: list[tuple[str, dict]] = []
    if base is not None:
        if not isinstance(base, str) or not base:
            raise ConfigError(f"key '{BASE_KEY}' in file {path} must be a file path, got {base!r}")
        layers.extend(_load_file_chain(path.parent / base, chain=(*chain, resolved)))
    layers.append((f"file {path}", data))
    return layers


def _read_yaml_mapping(path: Path, named_by: Optional[Path]) -> dict:
    via = f" (named by 'base:' in {named_by})" if named_by else ""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}{via}")
    try:
        node = OmegaConf.load(path)
    except yaml.YAMLError as e:
        raise ConfigError(f"malformed YAML in config file {path}{via}: {e}") from None
    except OmegaConfBaseException as e:
        raise ConfigError(f"cannot read config file {path}{via}: {_first_line(e)}") from None
    if not isinstance(node, DictConfig):
        raise ConfigError(f"config file {path}{via} must hold a mapping of keys, got a list")
    return OmegaConf.to_container(node, resolve=False)


def _parse_overrides(overrides: Iterable[str]) -> list[tuple[str, dict]]:
    if isinstance(overrides, str):
        raise ConfigError(f"overrides must be a list of 'key=value' strings, got the string {overrides!r}")
    layers = []
    for item in overrides:
        label = f"override '{item}'"
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"malformed {label}: expected 'dotted.key=value'")
        key = item.split("=", 1)[0].strip()
        parts = key.split(".")
        if not key or any(not p or not p.replace("_", "a").replace("-", "a").isalnum() for p in parts):
            raise ConfigError(f"malformed {label}: key {key!r} is not a dotted name like 'trainer.lr'")
        if parts[0] == BASE_KEY:
            raise ConfigError(f"{label}: '{BASE_KEY}' can only be set inside a config file")
        try:
            node = OmegaConf.from_dotlist([item])
        except (OmegaConfBaseException, yaml.YAMLError, ValueError) as e:
            raise ConfigError(f"malformed {label}: {_first_line(e)}") from None
        layers.append((label, OmegaConf.to_container(node, resolve=False)))
    return layers


# ---------------------------------------------------------------------------- error messages


def _provenance(layers: list[tuple[str, dict]]) -> dict[tuple, str]:
    """Dotted key path -> label of the last layer that set it."""
    origin: dict[tuple, str] = {}

    def walk(node: Any, prefix: tuple, label: str) -> None:
        origin[prefix] = label
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, (*prefix, str(k)), label)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, (*prefix, i), label)

    for label, data in layers:
        for k, v in data.items():
            walk(v, (str(k),), label)
    return origin


def _origin(origin: dict[tuple, str], loc: tuple) -> str:
    for n in range(len(loc), 0, -1):
        if loc[:n] in origin:
            label = origin[loc[:n]]
            return f"from {label}" if label.startswith("override") else f"in {label}"
    return "not set anywhere"


def _all_sources(layers: list[tuple[str, dict]]) -> str:
    return ", ".join(label for label, _ in layers) or "no file, no overrides"


def _dotted(loc: Sequence) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def _required_keys(data: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose value is ``???`` (OmegaConf's mandatory marker) in one layer."""
    if isinstance(data, dict):
        return [k for key, value in data.items() for k in _required_keys(value, f"{prefix}{key}.")]
    return [prefix[:-1]] if data == "???" else []


def _split_key(key: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in key.replace("[", ".").replace("]", "").split("."))


def key_error(subkey: str, value: Any, message: str) -> PydanticCustomError:
    """An error a section's validator raises about one of its keys (``subkey``, dotted below the
    section): the message then names the full key, e.g. ``algorithm.eps_high``, and its value."""
    return PydanticCustomError("value_error", message.replace("{", "{{").replace("}", "}}"),
                               {"subkey": subkey, "value": value})


def _explain(err: ValidationError, schema: type[BaseModel], origin: dict[tuple, str], sources: str) -> str:
    lines = []
    for item in err.errors():
        loc = tuple(p for p in item["loc"] if not _is_union_tag(p))
        subkey = (item.get("ctx") or {}).get("subkey")
        if subkey:
            loc = loc + _split_key(subkey)
            lines.append(f"bad value for key '{_dotted(loc)}' ({_origin(origin, loc)}): {item['msg']}; "
                         f"got {item['ctx']['value']!r}")
            continue
        key = _dotted(loc)
        kind = item["type"]
        if kind == "extra_forbidden":
            hint = _did_you_mean(schema, loc)
            lines.append(f"unknown key '{key}' ({_origin(origin, loc)}){hint}")
        elif kind == "missing":
            lines.append(f"missing required key '{key}' (not set by {sources}; add it or pass '{key}=...')")
        else:
            got = item.get("input")
            got = "" if isinstance(got, dict) else f"; got {got!r}"  # a whole section: the message names the key
            lines.append(f"bad value for key '{key}' ({_origin(origin, loc)}): {item['msg']}{got}")
    lines = list(dict.fromkeys(lines))  # union members can repeat one problem
    head = f"invalid {schema.__name__} config ({len(lines)} problem{'s' if len(lines) > 1 else ''}):"
    return head + "".join(f"\n  - {line}" for line in lines)


def _is_union_tag(part: Any) -> bool:
    # pydantic puts the tried union member into loc (e.g. 'int' or 'function-after[...]').
    return isinstance(part, str) and ("[" in part or part in {"int", "float", "str", "bool", "none"})


def _did_you_mean(schema: type[BaseModel], loc: tuple) -> str:
    model = _model_at(schema, loc[:-1])
    if model is None or not isinstance(loc[-1], str):
        return ""
    names = list(model.model_fields)
    close = difflib.get_close_matches(loc[-1], names, n=1, cutoff=0.6)
    valid = f"; valid keys here: {', '.join(names)}" if len(names) <= 12 else ""
    return (f"; did you mean '{close[0]}'?" if close else "") + valid


def _model_at(schema: type[BaseModel], loc: tuple) -> Optional[type[BaseModel]]:
    """The nested model class a loc points into, following fields (and Optional/list wrappers)."""
    model: Any = schema
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return None
        model = _unwrap(model.model_fields[part].annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is not None:
        models = [a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        if models:
            return models[0]
        args = [a for a in get_args(annotation) if a is not type(None)]
        if not args:
            return annotation
        annotation = args[-1]
    return annotation


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
