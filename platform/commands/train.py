"""``rtml train CONFIG [section.field=value ...]``: distributed training (Ray Train + DeepSpeed), logged to MLflow.

CONFIG is a recipe (debug, small, base) or a YAML file (see configs/). Without ``name=...`` each invocation is a
new run ``rtml-<recipe>-<time>``; with an existing ``name`` it resumes that run from its last checkpoint.
"""

from __future__ import annotations

import json
import time

from rtml.platform.configio import to_dict
from rtml.platform.train.config import TrainConfig, load_train_config


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a surrogate with Ray Train + DeepSpeed (MLflow-logged)")
    p.add_argument("config", help="recipe name (debug, small, base) or YAML file")
    p.add_argument("overrides", nargs="*", help="section.field=value, e.g. optim.lr=1e-3 data.store=PATH")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or "
                                                        "sqlite:///./mlflow.db)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=main)


def resolve(spec: str, overrides: list[str], tracking_uri: str | None = None) -> TrainConfig:
    return name_run(load_train_config(spec, overrides), overrides, "rtml", tracking_uri)


def name_run(cfg, overrides: list[str], prefix: str, tracking_uri: str | None = None):
    """Unless ``name``/``out`` were given: a new run ``<prefix>-<recipe>-<time>`` with outputs in
    ``<default out>/<name>``; ``tracking_uri`` (if given) wins over the config's."""
    keys = {o.split("=", 1)[0].strip() for o in overrides}
    default = type(cfg)
    if "name" not in keys and cfg.name == default.name:
        cfg.name = f"{prefix}-{cfg.recipe}-{time.strftime('%Y%m%d-%H%M%S')}"
    if "out" not in keys and cfg.out == default.out:
        cfg.out = f"{default.out}/{cfg.name}"
    if tracking_uri:
        cfg.tracking.uri = tracking_uri
    return cfg


def main(args) -> int:
    cfg = resolve(args.config, args.overrides, args.tracking_uri)
    if args.print_config:
        print(json.dumps(to_dict(cfg), indent=2))
        return 0
    return report(run(cfg))


def run(cfg: TrainConfig) -> dict:
    from rtml.platform.train.driver import run as drive

    return drive(cfg)


def report(summary: dict) -> int:
    from rtml.platform.evaluate import format_table

    print(f"MLflow run {summary['run_id']} ({summary['tracking_uri']})")
    final = summary.get("final", {})
    print(f"final step {final.get('step')}: val_loss {final.get('val_loss', float('nan')):.4g}, one-step MSE / "
          f"trivial {final.get('val_mse_ratio', float('nan')):.4f}")
    if summary.get("rollout"):
        print(format_table(summary["rollout"]))
    print(f"model: {summary.get('model')}  plots: {', '.join(summary.get('plots', []))}")
    return 0
