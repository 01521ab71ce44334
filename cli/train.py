"""``rtml train CONFIG [section.field=value ...]``: distributed training (Ray Train + DeepSpeed), logged to MLflow.

``rtml train --list-fields`` prints every field (generated from the config dataclass). CONFIG is a recipe (debug,
small, base) or a YAML file (see configs/). Without ``name=...`` each invocation is a new run
``rtml-<recipe>-<time>``; with an existing ``name`` it resumes that run from its last checkpoint.
"""

from __future__ import annotations

import json
import time

from rtml.cli.flags import ListFields
from rtml.platform.configio import to_dict
from rtml.platform.evaluate import format_table
from rtml.platform.regimes import format_regimes
from rtml.platform.train.config import TrainConfig, load_train_config
from rtml.platform.train.driver import run as drive


def add_parser(sub) -> None:
    add_config_parser(sub, "train", TrainConfig, main,
                      help="train a surrogate with Ray Train + DeepSpeed (MLflow-logged)",
                      config_help="recipe name (debug, small, base) or YAML file",
                      example="optim.lr=1e-3 data.store=PATH")


def add_config_parser(sub, name: str, cls, func, *, help: str, config_help: str, example: str) -> None:
    """The parser of a command run from a recipe/YAML config plus ``section.field=value`` overrides (``train``,
    ``meta-train``); the overrides' keys and defaults are ``cls``'s fields (``--list-fields``)."""
    p = sub.add_parser(name, help=help)
    p.add_argument("config", help=config_help)
    p.add_argument("overrides", nargs="*", help=f"section.field=value, e.g. {example} (see --list-fields)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or "
                                                        "sqlite:///./mlflow.db)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--list-fields", action=ListFields, config_cls=cls,
                   help="list every section.field an override can set (type, default, meaning) and exit")
    p.set_defaults(func=func)


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
    return resolve_and_run(args, resolve, run, report)


def resolve_and_run(args, resolve_fn, run_fn, report_fn) -> int:
    """``--print-config``: the resolved config; else run it and print the report."""
    cfg = resolve_fn(args.config, args.overrides, args.tracking_uri)
    if args.print_config:
        print(json.dumps(to_dict(cfg), indent=2))
        return 0
    return report_fn(run_fn(cfg))


def run(cfg: TrainConfig) -> dict:
    return drive(cfg)


def report(summary: dict) -> int:
    print(f"MLflow run {summary['run_id']} ({summary['tracking_uri']})")
    final = summary.get("final", {})
    print(f"final step {final.get('step')}: val_loss {final.get('val_loss', float('nan')):.4g}, one-step MSE / "
          f"trivial {final.get('val_mse_ratio', float('nan')):.4f}")
    if summary.get("rollout"):
        print(format_table(summary["rollout"]))
    if summary.get("regimes", {}).get("rows"):
        print("held-out dipole nRMSE per field regime (rtml / linear xc < 1: the learned term helps):")
        print(format_regimes(summary["regimes"]))
    if summary.get("selected"):
        sel = summary["selected"]
        print(f"exported the weights of step {sel['step']} (best held-out rollouts: {sel['score_kind']} "
              f"{sel['score']:.4g})" + (": training never beat the weights it started from (with the linear "
                                        "anchor: the linear-xc propagator)" if sel["step"] == 0 else ""))
    print(f"model: {summary.get('model')}  plots: {', '.join(summary.get('plots', []))}")
    if summary.get("evaluation_error") or summary.get("model_missing"):
        print(f"the held-out evaluation failed (the model is saved and logged): {summary['evaluation_error']}"
              if summary.get("evaluation_error") else summary["model_missing"])
        return 1
    return 0
