"""``rtml meta-train CONFIG [section.field=value ...]``: MAML meta-training on Ray Train workers, logged to MLflow.

CONFIG is a recipe (debug, small) or a YAML file (see configs/meta-*.yaml). Tasks are molecules of
``tasks.store``; ``tasks.exclude`` holds molecules out for adaptation tests; ``model.init`` starts from a trained
model. Without ``name=...`` each invocation is a new run ``rtml-meta-<recipe>-<time>``; an existing name resumes.
"""

from __future__ import annotations

import json

from rtml.meta.config import MetaTrainConfig, load_meta_config
from rtml.platform.configio import to_dict


def add_parser(sub) -> None:
    p = sub.add_parser("meta-train", help="MAML meta-training over molecules (Ray Train, MLflow-logged)")
    p.add_argument("config", help="recipe name (debug, small) or YAML file")
    p.add_argument("overrides", nargs="*", help="section.field=value, e.g. tasks.store=PATH model.init=MODEL")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or "
                                                        "sqlite:///./mlflow.db)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=main)


def resolve(spec: str, overrides: list[str], tracking_uri: str | None = None) -> MetaTrainConfig:
    from rtml.platform.commands.train import name_run

    return name_run(load_meta_config(spec, overrides), overrides, "rtml-meta", tracking_uri)


def main(args) -> int:
    cfg = resolve(args.config, args.overrides, args.tracking_uri)
    if args.print_config:
        print(json.dumps(to_dict(cfg), indent=2))
        return 0
    return report(run(cfg))


def run(cfg: MetaTrainConfig) -> dict:
    from rtml.meta.driver import run as drive

    return drive(cfg)


def report(summary: dict) -> int:
    final = summary.get("final", {})
    print(f"MLflow run {summary['run_id']} ({summary['tracking_uri']})")
    print(f"final step {final.get('step')}: meta-loss {final.get('meta_loss', float('nan')):.4g}")
    lrs = summary.get("meta_learner", {}).get("inner_lrs", {})
    print("inner learning rates: " + ", ".join(f"{g} {lr:.3g}" for g, lr in lrs.items()))
    print(f"model: {summary.get('model')}  (adapt with: rtml adapt --model {summary.get('model')} ...)")
    return 0
