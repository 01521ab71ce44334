"""``rtml evaluate MODEL STORE``: rollouts on held-out trajectories vs the reference and the trivial baseline.

MODEL: a ``model.pt`` from ``rtml train`` (or its run directory) or an MLflow model URI (``runs:/<id>/model``).
Writes ``metrics.json`` and plots to ``--out`` and logs them as an MLflow run (tag ``rtml.model``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rtml.platform.evaluate import RolloutEvalConfig


@dataclass(kw_only=True)
class EvaluateConfig:
    model: str
    store: str
    out: str = "runs/evaluate"
    ids: list[str] | None = None
    rollout: RolloutEvalConfig
    tracking_uri: str | None = None
    experiment: str = "rtml-evaluate"


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="rollout metrics and plots of a trained model on a trajectory store")
    p.add_argument("model", help="model.pt, a run directory, or an MLflow model URI")
    p.add_argument("store", help="Zarr trajectory store with held-out trajectories")
    p.add_argument("--out", default="runs/evaluate")
    p.add_argument("--ids", default=None, help="comma list of trajectory ids (default: all)")
    p.add_argument("--max-trajectories", type=int, default=8)
    p.add_argument("--max-steps", type=int, default=None, help="rollout frames per trajectory (default: all)")
    p.add_argument("--context", type=int, default=1, help="reference frames that warm up the model")
    p.add_argument("--tracking-uri", default=None)
    p.set_defaults(func=lambda a: run(EvaluateConfig(
        model=a.model, store=a.store, out=a.out, ids=a.ids.split(",") if a.ids else None,
        rollout=RolloutEvalConfig(max_trajectories=a.max_trajectories, max_steps=a.max_steps, context=a.context),
        tracking_uri=a.tracking_uri)) and 0)


def run(cfg: EvaluateConfig) -> dict:
    import mlflow

    from rtml.datasets.store.zarr_store import TrajectoryStore
    from rtml.platform import tracking
    from rtml.platform.evaluate import aggregate, evaluate_store, format_table, plot_results
    from rtml.platform.modelio import load_model

    TrajectoryStore(cfg.store)  # clear error for a missing/invalid store before loading anything else
    uri = tracking.resolve_uri(cfg.tracking_uri)
    tracking.check_reachable(uri)
    model = load_model(cfg.model, tracking_uri=uri)
    results = evaluate_store(model, cfg.store, cfg.ids, cfg.rollout)
    agg = aggregate(results)
    out = Path(cfg.out)
    plots = plot_results(results, out)
    metrics = {"model": cfg.model, "store": cfg.store, "rollout": agg,
               "per_trajectory": [{"id": r["id"], "model": r["model"], "trivial": r["trivial"]} for r in results]}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    run_id = tracking.start_run(uri, cfg.experiment, f"evaluate-{Path(cfg.store).name}",
                                tags={"rtml.model": cfg.model, "rtml.store": cfg.store})
    tracking.log_params(uri, run_id, {"model": cfg.model, "store": cfg.store, "trajectories": len(results),
                                      "max_steps": cfg.rollout.max_steps, "context": cfg.rollout.context})
    tracking.log_metrics(uri, run_id, agg, step=0)
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=run_id):
        for f in [out / "metrics.json", *plots]:
            mlflow.log_artifact(str(f))
    print(format_table(agg))
    print(f"plots: {', '.join(map(str, plots))}; metrics: {out / 'metrics.json'}; MLflow run {run_id}")
    metrics["run_id"] = run_id
    return metrics
