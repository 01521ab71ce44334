"""Command-line flags generated from a config dataclass (one source of truth for names, types, defaults, help).

Why a small generator rather than ``tyro``/``jsonargparse``: rtml's commands are argparse sub-parsers that also take
free-form dotted overrides (``optim.lr=1e-3``, parsed by :mod:`rtml.platform.configio`), and the values must go
through the same coercion and error messages as YAML recipes. A 150-line walker over ``dataclasses.fields`` keeps
that, adds no dependency, and the help text stays next to the field it describes:

- a field's help is its trailing ``# comment`` in the class body, else the ``` ``name``: text``` fragment of the
  class docstring;
- nested dataclasses are flattened (``AdaptConfig.settings.steps`` -> ``--steps``; ``rename`` resolves clashes);
- ``bool`` -> ``--x/--no-x``, ``list[...]`` -> a comma list, ``T | None`` -> also accepts ``none``, ``Literal`` ->
  choices; values are coerced by :func:`rtml.platform.configio.from_dict`'s rules, so the CLI and YAML agree.

``add_flags(parser, Cls)`` adds the flags, ``build(Cls, namespace)`` makes the config back, and
``describe(Cls)`` lists every dotted field (``rtml train --list-fields``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import operator
import re
import types
import typing
from dataclasses import dataclass

from rtml.platform.configio import ConfigError, _coerce

_MISSING = dataclasses.MISSING


@dataclass(kw_only=True, frozen=True)
class FieldInfo:
    path: str  # dotted, e.g. 'settings.steps'
    tp: object  # the resolved annotation
    default: object  # dataclasses.MISSING when the field is required
    help: str


def field_help(cls) -> dict[str, str]:
    """{field name: help} from the docstring's ``name``: fragments, overridden by trailing ``# comments``."""
    helps: dict[str, str] = {}
    doc = " ".join((cls.__doc__ or "").split())
    names = {f.name for f in dataclasses.fields(cls)}
    heads = [m for m in re.finditer(r"(?:^|(?<=[\s*(]))((?:``\w+``(?:/|, )?)+)(?::| —)\s", doc)
             if names & set(re.findall(r"``(\w+)``", m.group(1)))]  # ``None``: ... is text, not a field
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(doc)
        text = doc[m.end():end].split(" * ")[0].strip().rstrip(";,*").strip()
        text = text[:-1] if text.endswith(".") and not text.endswith("..") else text
        for name in re.findall(r"``(\w+)``", m.group(1)):
            helps[name] = text
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError, SyntaxError):  # no source shipped, or a file edited under a running process
        return helps
    for line in source.splitlines():
        m = re.match(r"^\s+(\w+)\s*:[^#]*#\s*(.+)$", line)
        if m:
            helps[m.group(1)] = m.group(2).strip()
    return helps


def _default(f: dataclasses.Field):
    if f.default is not _MISSING:
        return f.default
    if f.default_factory is not _MISSING:
        return f.default_factory()
    return _MISSING


def describe(cls, prefix: str = "") -> list[FieldInfo]:
    """Every leaf field of dataclass ``cls`` (nested dataclasses flattened), with type, default and help."""
    hints = typing.get_type_hints(cls)
    helps = field_help(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.extend(describe(tp, f"{prefix}{f.name}."))
        else:
            out.append(FieldInfo(path=prefix + f.name, tp=tp, default=_default(f), help=helps.get(f.name, "")))
    return out


def _strip_none(tp) -> tuple[object, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp):
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        return functools.reduce(operator.or_, rest), True
    return tp, False


def type_name(tp) -> str:
    inner, optional = _strip_none(tp)
    origin = typing.get_origin(inner)
    if origin is typing.Literal:
        name = "|".join(map(str, typing.get_args(inner)))
    elif origin in (list, tuple):
        name = f"list[{type_name(typing.get_args(inner)[0]) if typing.get_args(inner) else 'any'}]"
    else:
        name = getattr(inner, "__name__", str(inner))
    return f"{name} | None" if optional else name


def show(value) -> str:
    if value is _MISSING:
        return "required"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "none"
    return str(value)


def parse_value(tp, text: str, where: str):
    """One command-line string -> a value of ``tp`` (``none`` for optionals, comma lists for lists)."""
    import yaml

    inner, optional = _strip_none(tp)
    if optional and text.strip().lower() in ("none", "null"):
        return None
    origin = typing.get_origin(inner)
    if origin in (list, tuple):
        item = typing.get_args(inner)[0] if typing.get_args(inner) else str
        value = [parse_value(item, t.strip(), where) for t in text.split(",") if t.strip()]
        return tuple(value) if origin is tuple else value
    if inner is str or origin is typing.Literal:
        return text
    try:
        return _coerce(inner, yaml.safe_load(text), "<command line>", where)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def flag_name(info: FieldInfo, rename: dict[str, str]) -> str:
    return rename.get(info.path, "--" + info.path.rsplit(".", 1)[-1].replace("_", "-"))


def add_flags(parser: argparse.ArgumentParser, cls, *, skip: tuple[str, ...] = (), rename: dict[str, str] | None = None,
              positional: tuple[str, ...] = (), help: dict[str, str] | None = None,
              words: tuple[str, ...] = ()) -> None:
    """One argument per leaf field of ``cls`` (dest = the dotted path); ``positional`` fields become positionals
    (in that order; optional ones get ``nargs='?'``), ``rename`` maps a path to a flag, ``help`` adds to a field's
    help, ``skip`` leaves fields at their defaults."""
    rename, extra = rename or {}, help or {}
    infos = {i.path: i for i in describe(cls) if i.path not in skip and not i.path.startswith(tuple(s + "." for s in skip))}
    for path in positional:
        info = infos.pop(path)
        inner, _ = _strip_none(info.tp)
        if typing.get_origin(inner) in (list, tuple):  # a list positional: the remaining words
            item = typing.get_args(inner)[0] if typing.get_args(inner) else str
            parser.add_argument(path, nargs="*", type=_converter(FieldInfo(path=path, tp=item, default=_MISSING,
                                                                           help="")), help=_help(info, extra))
            continue
        kw = {"nargs": "?", "default": info.default} if info.default is not _MISSING else {}
        parser.add_argument(path, type=_converter(info), help=_help(info, extra), **kw)
    for info in infos.values():
        inner, _ = _strip_none(info.tp)
        kw: dict = {"dest": info.path, "help": _help(info, extra)}
        if inner is bool:
            kw.update(action=argparse.BooleanOptionalAction, default=info.default)
        else:
            kw.update(type=_converter(info), metavar=_metavar(inner))
            if typing.get_origin(inner) is typing.Literal:
                kw.update(choices=typing.get_args(inner), metavar=None)
            if info.path in words:
                item = typing.get_args(inner)[0] if typing.get_args(inner) else str
                kw.update(nargs="+", metavar="ITEM", type=_converter(FieldInfo(path=info.path, tp=item,
                                                                               default=_MISSING, help="")))
            if info.default is _MISSING:
                kw["required"] = True
            else:
                kw["default"] = info.default
        parser.add_argument(flag_name(info, rename), **kw)


def _metavar(tp) -> str:
    if typing.get_origin(tp) in (list, tuple):
        return "A,B,..."
    return type_name(tp).upper()


def _converter(info: FieldInfo):
    def convert(text: str):
        return parse_value(info.tp, text, info.path)
    convert.__name__ = type_name(info.tp)  # argparse names it in "invalid <type> value" errors
    return convert


def _help(info: FieldInfo, extra: dict[str, str]) -> str:
    text = " ".join(t for t in (info.help, extra.get(info.path, "")) if t)
    if info.default is not _MISSING:
        text += f" (default: {show(info.default)})"
    return text.replace("%", "%%")


def build(cls, args: argparse.Namespace, prefix: str = "", **fixed):
    """The dataclass ``cls`` back from a namespace filled by :func:`add_flags` (``fixed`` wins over it)."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        path = prefix + f.name
        if f.name in fixed:
            kwargs[f.name] = fixed[f.name]
        elif dataclasses.is_dataclass(hints[f.name]):
            kwargs[f.name] = build(hints[f.name], args, path + ".")
        elif hasattr(args, path):
            kwargs[f.name] = getattr(args, path)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError("<command line>", prefix.rstrip(".") or cls.__name__, "a valid value", str(exc)) from None


def field_table(cls) -> str:
    """Every dotted field of ``cls``: ``path  type  default  help`` (for ``--list-fields``)."""
    rows = [(i.path, type_name(i.tp), show(i.default), i.help) for i in describe(cls)]
    w0, w1, w2 = (max(len(r[k]) for r in rows) for k in range(3))
    w2 = min(w2, 24)
    return "\n".join(f"{p:<{w0}}  {t:<{w1}}  {d[:24]:<{w2}}  {h}".rstrip() for p, t, d, h in rows)


class ListFields(argparse.Action):
    """``--list-fields``: print :func:`field_table` of the command's config class and exit."""

    def __init__(self, option_strings, dest, config_cls=None, **kw):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)
        self.config_cls = config_cls

    def __call__(self, parser, namespace, values, option_string=None):
        print(field_table(self.config_cls))
        parser.exit()
