"""``rtml evaluate MODEL STORE``: rollouts on held-out trajectories vs the reference, side by side with the
frozen-xc and trivial physics baselines.

MODEL: a ``model.pt`` from ``rtml train`` (or its run directory) or an MLflow model URI (``runs:/<id>/model``);
``--baseline-only`` evaluates the baselines without a model. Writes ``metrics.json`` and plots to ``--out``,
``--json PATH`` the aggregate ``{"model": {...}, "frozen_xc": {...}, "linear_xc": {...}, "trivial": {...}}``, and logs an MLflow run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from rtml.platform.evaluate import RolloutEvalConfig, as_json

DEFAULTS = RolloutEvalConfig()  # the CLI's defaults come from the dataclass (one source of truth)


@dataclass(kw_only=True)
class EvaluateConfig:
    model: str | None  # None: baselines only
    store: str
    out: str = "runs/evaluate"
    ids: list[str] | None = None
    rollout: RolloutEvalConfig = field(default_factory=RolloutEvalConfig)
    json_path: str | None = None
    tracking_uri: str | None = None
    experiment: str = "rtml-evaluate"


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="rollout metrics and plots of a trained model (and the physics baselines) "
                                        "on a trajectory store")
    p.add_argument("model", nargs="?", default=None, help="model.pt, a run directory, or an MLflow model URI "
                                                          "(omit with --baseline-only)")
    p.add_argument("store", help="Zarr trajectory store with held-out trajectories")
    p.add_argument("--baseline-only", action="store_true", help="evaluate frozen-xc and trivial without a model")
    p.add_argument("--out", default="runs/evaluate")
    p.add_argument("--json", dest="json_path", default=None, help="write {model, frozen_xc, trivial} metrics here")
    p.add_argument("--ids", default=None, help="comma list of trajectory ids (default: all)")
    p.add_argument("--max-trajectories", type=int, default=DEFAULTS.max_trajectories)
    p.add_argument("--max-steps", type=int, default=DEFAULTS.max_steps, help="rollout frames per trajectory "
                                                                             "(default: all)")
    p.add_argument("--context", type=int, default=DEFAULTS.context, help="reference frames that warm up the model")
    p.add_argument("--batch", type=int, default=DEFAULTS.batch, help="trajectories of equal length rolled out "
                                                                     "together (1: one at a time)")
    p.add_argument("--tracking-uri", default=None)
    p.set_defaults(func=_main)


def _main(a) -> int:
    if a.baseline_only == (a.model is not None):
        from rtml.platform.configio import ConfigError

        raise ConfigError("<command line>", "MODEL", "MODEL STORE, or --baseline-only STORE (one of the two)",
                          a.model)
    run(EvaluateConfig(model=a.model, store=a.store, out=a.out, ids=a.ids.split(",") if a.ids else None,
                       rollout=RolloutEvalConfig(max_trajectories=a.max_trajectories, max_steps=a.max_steps,
                                                 context=a.context, batch=a.batch),
                       json_path=a.json_path, tracking_uri=a.tracking_uri))
    return 0


def run(cfg: EvaluateConfig) -> dict:
    import mlflow

    from rtml.datasets.store.zarr_store import TrajectoryStore
    from rtml.platform import tracking
    from rtml.platform.evaluate import PREDICTORS, aggregate, evaluate_store, format_table, plot_results
    from rtml.platform.modelio import load_model

    TrajectoryStore(cfg.store)  # clear error for a missing/invalid store before loading anything else
    uri = tracking.resolve_uri(cfg.tracking_uri)
    tracking.check_reachable(uri)
    model = load_model(cfg.model, tracking_uri=uri) if cfg.model else None
    results = evaluate_store(model, cfg.store, cfg.ids, cfg.rollout)
    agg = aggregate(results)
    out = Path(cfg.out)
    plots = plot_results(results, out)
    metrics = {"model": cfg.model, "store": cfg.store, "rollout": agg, **as_json(agg),
               "per_trajectory": [{"id": r["id"], **{w: r[w] for w in PREDICTORS if w in r}} for r in results]}
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
    print(f"plots: {', '.join(map(str, plots))}; metrics: {out / 'metrics.json'}; MLflow run {run_id}")
    metrics["run_id"] = run_id
    return metrics
