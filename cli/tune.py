"""``rtml tune SPACE [section.field=value ...]``: a Ray Tune sweep (ASHA) of Ray Train runs, nested in MLflow.

The arguments are :class:`rtml.platform.tune.TuneConfig`'s fields (names, defaults and help come from it)."""

from __future__ import annotations

import json

from rtml.cli.flags import add_flags, build
from rtml.platform.tune import TuneConfig
from rtml.platform.tune import run as sweep


def add_parser(sub) -> None:
    p = sub.add_parser("tune", help="hyperparameter sweep over training runs (Ray Tune + ASHA, MLflow-nested)")
    add_flags(p, TuneConfig, positional=("space", "overrides"))
    p.set_defaults(func=main)


def main(args) -> int:
    s = run(build(TuneConfig, args))
    print(json.dumps(s, indent=2, default=str))
    return 0 if not s["errors"] else 1


def run(cfg: TuneConfig) -> dict:
    return sweep(cfg)
