"""``rtml tune SPACE [--flag VALUE ...] [--train.section.field VALUE ...]``: a Ray Tune sweep (ASHA) of Ray Train runs,
nested in MLflow.

SPACE is a file of ``tune_spaces/``; its ``base`` recipe (:mod:`rtml.cli.recipes`) and ``fixed`` values make every
trial's training config, which ``--train.*`` flags change further (``--train.data.store PATH``). The other flags
are :class:`rtml.platform.tune.TuneConfig`'s fields; ``rtml tune debug --help`` lists them all."""

from __future__ import annotations

import json
import sys

from rtml.cli import recipes
from rtml.cli.parsing import parse, start_from
from rtml.platform.configio import ConfigError, updated
from rtml.platform.train.config import TrainConfig, check
from rtml.platform.tune import TuneConfig, load_space
from rtml.platform.tune import run as sweep

HELP = "hyperparameter sweep over training runs (Ray Tune + ASHA, MLflow-nested)"


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(f"usage: rtml tune SPACE [--flag VALUE ...]   (SPACE: a file of tune_spaces/; rtml tune SPACE --help "
              f"lists the flags)\n{__doc__}", file=sys.stdout if argv else sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    name, rest = argv[0], argv[1:]
    default = TuneConfig(space=name, train=base_training(name))
    cfg = parse(TuneConfig, rest, prog=f"rtml tune {name}", description=__doc__.split("\n\n")[0], default=default)
    if cfg.space != name:
        raise ConfigError("<command line>", "--space", f"no flag: the space is the first word ({name!r})", cfg.space)
    s = run(cfg)
    print(json.dumps(s, indent=2, default=str))
    return 0 if not s["errors"] else 1


def base_training(space_name: str) -> TrainConfig:
    """Every trial's training config before the search: the space's base recipe (or YAML) and its fixed values."""
    space = load_space(space_name)
    base = start_from(space.base, TrainConfig, recipes.TRAIN, check, f"tune_spaces/{space_name}.py", "base")
    source = f"tune_spaces/{space_name}.py: fixed"
    cfg = updated(base, space.fixed, source)
    check(cfg, source)
    return cfg


def run(cfg: TuneConfig) -> dict:
    return sweep(cfg)
