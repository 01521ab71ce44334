"""``rtml meta-train CONFIG [section.field=value ...]``: MAML meta-training on Ray Train workers, logged to MLflow.

``rtml meta-train --list-fields`` prints every field (generated from the config dataclass). CONFIG is a recipe
(debug, small) or a YAML file (see configs/meta-*.yaml). Tasks are molecules of ``tasks.store``; ``tasks.exclude``
holds molecules out for adaptation tests; ``model.init`` starts from a trained model. Without ``name=...`` each
invocation is a new run ``rtml-meta-<recipe>-<time>``; an existing name resumes.
"""

from __future__ import annotations

from rtml.cli.train import add_config_parser, name_run, resolve_and_run
from rtml.meta.config import MetaTrainConfig, load_meta_config
from rtml.meta.driver import run as drive


def add_parser(sub) -> None:
    add_config_parser(sub, "meta-train", MetaTrainConfig, main,
                      help="MAML meta-training over molecules (Ray Train, MLflow-logged)",
                      config_help="recipe name (debug, small) or YAML file",
                      example="tasks.store=PATH model.init=MODEL")


def resolve(spec: str, overrides: list[str], tracking_uri: str | None = None) -> MetaTrainConfig:
    return name_run(load_meta_config(spec, overrides), overrides, "rtml-meta", tracking_uri)


def main(args) -> int:
    return resolve_and_run(args, resolve, run, report)


def run(cfg: MetaTrainConfig) -> dict:
    return drive(cfg)


def report(summary: dict) -> int:
    final = summary.get("final", {})
    print(f"MLflow run {summary['run_id']} ({summary['tracking_uri']})")
    print(f"final step {final.get('step')}: meta-loss {final.get('meta_loss', float('nan')):.4g}")
    lrs = summary.get("meta_learner", {}).get("inner_lrs", {})
    print("inner learning rates: " + ", ".join(f"{g} {lr:.3g}" for g, lr in lrs.items()))
    print(f"model: {summary.get('model')}  (adapt with: rtml adapt --model {summary.get('model')} ...)")
    return 0
