"""Typed configs <-> YAML / dicts.

Every config in rtml is a ``@dataclass(kw_only=True)`` tree. :func:`from_dict` builds one from plain data and names
the file and the dotted field of anything wrong (unknown key, wrong type); :func:`to_dict` is its inverse and what is
saved next to every run; :func:`load_file` reads a YAML config on top of a recipe; :func:`set_paths` sets dotted
fields (a sweep's parameters). Command-line flags come from the same dataclasses through ``tyro``
(:mod:`rtml.cli.parsing`).
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Callable
from pathlib import Path

import yaml


class ConfigError(ValueError):
    """A bad configuration: ``ConfigError(source, field, expected, got)``."""

    def __init__(self, source: str, field: str, expected: str, got=None):
        msg = f"{source}: field '{field}': expected {expected}"
        if got is not None:
            msg += f", got {got!r}"
        super().__init__(msg)
        self.args_ = (source, field, expected, got)

    def __reduce__(self):
        return (ConfigError, self.args_)


def to_dict(cfg) -> dict:
    """Dataclass tree -> plain dict (tuples become lists), YAML- and JSON-safe."""
    def conv(v):
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v
    return conv(cfg)


def flatten(d: dict, prefix: str = "") -> dict:
    """{'optim': {'lr': 1}} -> {'optim.lr': 1} (for MLflow params)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _coerce(tp, value, source: str, name: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(source, name, f"a mapping of {tp.__name__} fields", value)
        return from_dict(tp, value, source, prefix=name + ".")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(source, name, "one of " + ", ".join(map(repr, args)), value)
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, source, name)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(source, name, " or ".join(getattr(a, "__name__", str(a)) for a in args), value)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(source, name, f"a list ({tp})", value)
        inner = args[0] if args else typing.Any
        items = [_coerce(inner, v, source, f"{name}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(source, name, "a mapping", value)
        return dict(value)
    if tp is typing.Any:
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is bool and isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    raise ConfigError(source, name, getattr(tp, "__name__", str(tp)), value)


def from_dict(cls, data: dict, source: str = "<config>", prefix: str = ""):
    """Build dataclass ``cls`` from ``data``; missing keys keep their defaults, unknown keys are errors."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    retired = getattr(cls, "RETIRED", {})
    for k in [k for k in data if k in retired]:
        if data[k] != retired[k]:
            raise ConfigError(source, prefix + str(k), f"{retired[k]!r} or no entry (the field was retired: it had no "
                              "effect but an error)", repr(data[k]))
        data = {key: v for key, v in data.items() if key != k}
    for k in data:
        if k not in names:
            raise ConfigError(source, prefix + str(k), f"one of {sorted(names)} (unknown field)")
    kwargs = {k: _coerce(hints[k], v, source, prefix + k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(source, prefix.rstrip(".") or cls.__name__, "a valid value", str(exc)) from None


def require_positive(source: str, section, prefix: str, names: tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` naming ``prefix.name`` for the first of ``names`` on ``section`` below 1."""
    for name in names:
        if getattr(section, name) < 1:
            raise ConfigError(source, f"{prefix}.{name}", "an integer >= 1", getattr(section, name))


def set_paths(data: dict, values: dict, source: str = "<config>") -> dict:
    """A copy of nested ``data`` with each dotted key of ``values`` set (``{"optim.lr": 1e-3}``); a path that leaves
    the existing sections is an error naming it."""
    out = copy.deepcopy(data)
    for key, value in values.items():
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                raise ConfigError(source, key, "a path through config sections", f"'{p}' is not a section")
        node[leaf] = copy.deepcopy(value)
    return out


def updated(cfg, values: dict, source: str = "<config>"):
    """A new config of ``cfg``'s type with each dotted key of ``values`` set (typed and checked by
    :func:`from_dict`): ``updated(cfg, {"optim.lr": 1e-3, "data.horizons": [4, 8]})``."""
    return from_dict(type(cfg), set_paths(to_dict(cfg), values, source), source)


def load_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(str(p), "<file>", "an existing YAML config file")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(str(p), "<root>", "a mapping of config sections", type(data).__name__)
    return data


def save_yaml(cfg, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return p


def merge(base: dict, extra: dict) -> dict:
    """``extra`` merged into a copy of ``base``, section by section (nested dicts merge, values replace); shares no
    object with either."""
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def load_file(cls, path: str | Path, recipes: dict[str, Callable[[], object]], check: Callable | None = None):
    """A YAML config file: the recipe its ``recipe:`` key names (default ``debug``), then every field the file sets
    (sections merge, values replace); ``check(cfg, source)`` validates the result. Errors name the file and field."""
    user, source = load_yaml(path), str(path)
    name = user.get("recipe", "debug")
    if name not in recipes:
        raise ConfigError(source, "recipe", f"one of {sorted(recipes)}", name)
    model = user.get("model")
    if isinstance(model, dict) and "preset" in model:  # retired: a run's saved config.yaml also lists every field
        if not {"geometry", "field", "codec", "dynamics"} <= set(model):
            raise ConfigError(source, "model.preset", "no entry (retired: the architecture comes from the recipe, "
                              "`recipe: small`, and the model fields the file sets)", model["preset"])
        user = {**user, "model": {k: v for k, v in model.items() if k != "preset"}}
    cfg = from_dict(cls, merge(to_dict(recipes[name]()), user), source)
    if check is not None:
        check(cfg, source)
    return cfg
