"""``rtml tune SPACE [section.field=value ...]``: a Ray Tune sweep (ASHA) of Ray Train runs, nested in MLflow."""

from __future__ import annotations

import json

from rtml.platform.tune import TuneConfig


def add_parser(sub) -> None:
    p = sub.add_parser("tune", help="hyperparameter sweep over training runs (Ray Tune + ASHA, MLflow-nested)")
    p.add_argument("space", help="search space: a file name in tune_spaces/ (debug, small)")
    p.add_argument("overrides", nargs="*", help="fixed training overrides for every trial (e.g. data.store=...)")
    p.add_argument("--name", default=None, help="sweep name (default sweep-SPACE); an existing one is resumed")
    p.add_argument("--storage", default="runs/tune")
    p.add_argument("--num-samples", type=int, default=None)
    p.add_argument("--tracking-uri", default=None)
    p.set_defaults(func=main)


def main(args) -> int:
    s = run(TuneConfig(space=args.space, name=args.name or f"sweep-{args.space}", storage=args.storage,
                       out=f"{args.storage}/out", tracking_uri=args.tracking_uri, overrides=args.overrides,
                       num_samples=args.num_samples))
    print(json.dumps(s, indent=2, default=str))
    return 0 if not s["errors"] else 1


def run(cfg: TuneConfig) -> dict:
    from rtml.platform.tune import run as sweep

    return sweep(cfg)
