"""``rtml evaluate STORE --model MODEL``: rollouts on held-out trajectories vs the reference, side by side with the
frozen-xc, linear-xc and trivial physics baselines.

MODEL: a ``model.pt`` from ``rtml train`` (or its run directory) or an MLflow model URI (``runs:/<id>/model``);
without ``--model`` only the baselines are evaluated. Writes ``metrics.json`` and plots to ``--out``,
``--json-path PATH`` the aggregate ``{"model": {...}, "frozen_xc": {...}, "linear_xc": {...}, "grid_xc": {...}, "trivial": {...}}``, and logs an MLflow run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import tyro

from rtml.cli.parsing import parse
from rtml.datasets.store.zarr_store import TrajectoryStore
from rtml.platform import tracking
from rtml.platform.evaluate import (
    RolloutEvalConfig,
    aggregate,
    as_json,
    evaluate_store,
    format_table,
    per_trajectory,
    plot_results,
)
from rtml.platform.modelio import load_model
from rtml.platform.regimes import format_regimes, summarize_regimes


@dataclass(kw_only=True)
class EvaluateConfig:
    store: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="STORE")]  # Zarr trajectory store with held-out trajectories
    model: str | None = None  # model.pt, a run directory, or an MLflow model URI (None: the baselines only)
    out: str = "runs/evaluate"  # folder for metrics.json and plots
    ids: list[str] | None = None  # trajectory ids (None: all)
    rollout: RolloutEvalConfig = field(default_factory=RolloutEvalConfig)
    json_path: str | None = None  # also write the aggregate {model, frozen_xc, linear_xc, grid_xc, trivial} metrics here
    tracking_uri: str | None = None  # MLflow tracking URI (None: $MLFLOW_TRACKING_URI, else ./mlflow.db)
    experiment: str = "rtml-evaluate"  # MLflow experiment

    def __post_init__(self):
        if self.rollout.max_trajectories < 1:
            raise ValueError(f"rollout.max_trajectories: expected an integer >= 1, got {self.rollout.max_trajectories}")


HELP = "rollout metrics and plots of a trained model (and the physics baselines) on a trajectory store"


def main(argv: list[str]) -> int:
    run(parse(EvaluateConfig, argv, prog="rtml evaluate", description=__doc__.split("\n\n")[0], flat=True))
    return 0


def run(cfg: EvaluateConfig) -> dict:
    import mlflow

    TrajectoryStore(cfg.store)  # clear error for a missing/invalid store before loading anything else
    uri = tracking.resolve_uri(cfg.tracking_uri)
    tracking.check_reachable(uri)
    model = load_model(cfg.model, tracking_uri=uri) if cfg.model else None
    results = evaluate_store(model, cfg.store, cfg.ids, cfg.rollout)
    agg = aggregate(results)
    out = Path(cfg.out)
    plots = plot_results(results, out)
    rows = per_trajectory(results)
    metrics = {"model": cfg.model, "store": cfg.store, "rollout": agg, **as_json(agg), "per_trajectory": rows,
               "regimes": summarize_regimes(rows)}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if cfg.json_path:
        Path(cfg.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.json_path).write_text(json.dumps(as_json(agg), indent=2))
    label = cfg.model or "baselines"
    run_id = tracking.start_run(uri, cfg.experiment, f"evaluate-{Path(cfg.store).name}",
                                tags={"rtml.model": label, "rtml.store": cfg.store})
    tracking.log_params(uri, run_id, {"model": label, "store": cfg.store, "trajectories": len(results),
                                      "max_steps": cfg.rollout.max_steps, "context": cfg.rollout.context})
    tracking.log_metrics(uri, run_id, agg, step=0)
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=run_id):
        for f in [out / "metrics.json", *plots]:
            mlflow.log_artifact(str(f))
    print(format_table(agg))
    print("dipole nRMSE per field regime:")
    print(format_regimes(metrics["regimes"]))
    print(f"plots: {', '.join(map(str, plots))}; metrics: {out / 'metrics.json'}; MLflow run {run_id}")
    metrics["run_id"] = run_id
    return metrics
