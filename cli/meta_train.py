"""``rtml meta-train RECIPE_OR_YAML [--section.field VALUE ...]``: MAML meta-training on Ray Train workers, logged to
MLflow.

RECIPE is ``debug`` or ``small`` (:mod:`rtml.cli.recipes`) or a YAML file; ``rtml meta-train small --help`` lists
every flag. Tasks are molecules of ``--tasks.store``; ``--tasks.exclude`` holds molecules out for adaptation tests;
``--model.init`` starts from a trained model. Without ``--name`` each invocation is a new run
``rtml-meta-<recipe>-<time>``; an existing name resumes.
"""

from __future__ import annotations

from rtml.cli import recipes
from rtml.cli.parsing import parse_from_recipe
from rtml.cli.train import name_run
from rtml.meta.config import MetaTrainConfig, check
from rtml.meta.driver import run as drive

HELP = "MAML meta-training over molecules (Ray Train, MLflow-logged)"


def main(argv: list[str]) -> int:
    cfg = parse_from_recipe(argv, MetaTrainConfig, recipes.META, prog="rtml meta-train", check=check)
    return 0 if cfg is None else report(run(name_run(cfg, "rtml-meta")))


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
