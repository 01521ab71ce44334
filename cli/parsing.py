"""Command-line flags from the config dataclasses, through ``tyro``: one source for names, types, defaults and help.

``tyro`` turns a ``@dataclass(kw_only=True)`` tree into flags: nested sections become dotted flags
(``--optim.lr 1e-3``), ``bool`` -> ``--x/--no-x``, ``list``/``tuple`` -> space-separated values, ``T | None`` also
takes ``None``, ``Literal`` -> choices, and a field's help is its trailing ``# comment`` (or the class docstring).
Why tyro (not jsonargparse): rtml's fields are documented by trailing comments, which tyro reads and jsonargparse
does not; YAML files are rtml's own format (:func:`rtml.platform.configio.load_file`, the same loader the worker
uses) rather than the parser's.

:func:`parse` builds one config from flags; :func:`parse_from_recipe` is the ``rtml train``/``meta-train`` form:
the first word is a recipe (:mod:`rtml.cli.recipes`) or a YAML file, the flags then set fields on top of it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import tyro
import yaml

from rtml.platform.configio import ConfigError, load_file, to_dict

T = TypeVar("T")

PRINT_CONFIG = "--print-config"


def parse(cls: type[T], argv: Sequence[str], *, prog: str, description: str | None = None,
          default: T | None = None, flat: bool = False) -> T:
    """``cls`` from command-line words (``default``: the values flags start from; ``flat``: nested sections' flags
    without their prefix, ``--max-steps`` for ``settings.max_steps``). A bad value, or one the dataclass refuses
    (``__post_init__``), is reported by tyro with the flag's help, exit status 2."""
    config = (tyro.conf.OmitArgPrefixes,) if flat else ()
    return tyro.cli(cls, args=list(argv), prog=prog, description=description, default=default, config=config)


def start_from(word: str, cls: type[T], recipes: dict[str, Callable[[], T]], check: Callable[[T, str], None],
               source: str, field: str) -> T:
    """The config a recipe name or a YAML file (``recipe:`` + the fields it sets) stands for; anything else is a
    :class:`ConfigError` naming ``source`` and ``field``."""
    if word in recipes:
        return recipes[word]()
    if word.endswith((".yaml", ".yml")) or Path(word).is_file():
        return load_file(cls, word, recipes, check)
    raise ConfigError(source, field, f"a recipe {sorted(recipes)} or a YAML file", word)


def parse_from_recipe(argv: Sequence[str], cls: type[T], recipes: dict[str, Callable[[], T]], *, prog: str,
                      check: Callable[[T, str], None], what: str = "RECIPE") -> T | None:
    """``RECIPE_OR_YAML [--section.field VALUE ...]`` -> the config; with ``--print-config`` it is printed as YAML
    (a file the command reads back) and None is returned.

    ``rtml <command> --help`` lists the recipes; ``rtml <command> RECIPE --help`` every flag with its default in that
    recipe."""
    argv = list(argv)
    if not argv or argv[0].startswith("-"):
        lines = [f"usage: {prog} {what}_OR_YAML [--section.field VALUE ...] [{PRINT_CONFIG}]", "",
                 f"{what} (then `{prog} {what} --help` lists every flag with its value there):"]
        lines += [f"  {name:<10} {(fn.__doc__ or '').strip().splitlines()[0]}" for name, fn in recipes.items()]
        lines.append(f"  FILE.yaml  a config file: `recipe: NAME` and the fields it changes (`{prog} small "
                     f"{PRINT_CONFIG} > my.yaml` writes one)")
        print("\n".join(lines), file=sys.stdout if argv[:1] in (["-h"], ["--help"]) else sys.stderr)
        raise SystemExit(0 if argv[:1] in (["-h"], ["--help"]) else 2)
    word, rest = argv[0], argv[1:]
    print_config = PRINT_CONFIG in rest
    rest = [a for a in rest if a != PRINT_CONFIG]
    default = start_from(word, cls, recipes, check, "<command line>", what)
    doc = (recipes[word].__doc__ if word in recipes else f"the config file {word}") or ""
    cfg = parse(cls, rest, prog=f"{prog} {word}", description=" ".join(doc.split()), default=default)
    check(cfg, "<command line>")
    if print_config:
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return None
    return cfg
