"""``rtml train RECIPE_OR_YAML [--section.field VALUE ...]``: distributed training (Ray Train + DeepSpeed), logged to
MLflow.

RECIPE is a function of :mod:`rtml.cli.recipes` (debug, small, corpus, stride8, base) or a YAML file;
``rtml train small --help`` lists every flag with its value in that recipe. Without ``--name`` each invocation is a
new run ``rtml-<recipe>-<time>``; with an existing name it resumes that run from its last checkpoint.
"""

from __future__ import annotations

import time

from rtml.cli import recipes
from rtml.cli.parsing import parse_from_recipe
from rtml.platform.evaluate import format_table
from rtml.platform.regimes import format_regimes
from rtml.platform.train.config import TrainConfig, check
from rtml.platform.train.driver import run as drive

HELP = "train a surrogate with Ray Train + DeepSpeed (MLflow-logged)"


def main(argv: list[str]) -> int:
    cfg = parse_from_recipe(argv, TrainConfig, recipes.TRAIN, prog="rtml train", check=check)
    return 0 if cfg is None else report(run(name_run(cfg, "rtml")))


def name_run(cfg, prefix: str):
    """Unless ``--name``/``--out`` were given (still the dataclass defaults): a new run ``<prefix>-<recipe>-<time>``
    with outputs in ``<default out>/<name>``."""
    default = type(cfg)
    if cfg.name == default.name:
        cfg.name = f"{prefix}-{cfg.recipe}-{time.strftime('%Y%m%d-%H%M%S')}"
    if cfg.out == default.out:
        cfg.out = f"{default.out}/{cfg.name}"
    return cfg


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
