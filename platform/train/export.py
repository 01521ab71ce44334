"""End of training on rank 0: consolidated model file, held-out rollout evaluation, plots, MLflow artifacts."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rtml.datasets.store.zarr_store import TrajectoryStore
from rtml.datasets.windows import split_of
from rtml.platform import tracking
from rtml.platform.configio import save_yaml
from rtml.platform.evaluate import aggregate, evaluate_store, per_trajectory, plot_results
from rtml.platform.mlflow_model import log_model
from rtml.platform.modelio import load_model, save_model
from rtml.platform.regimes import summarize_regimes
from rtml.platform.train.config import TrainConfig

EVAL_TAG = "rtml.evaluation"


def held_out_ids(cfg: TrainConfig) -> tuple[str, list[str] | None]:
    """(store, ids) of the held-out trajectories: ``data.val_store``, else the 'val' split of ``data.store``."""
    if cfg.data.val_store:
        return cfg.data.val_store, None

    ids = [i for i in TrajectoryStore(cfg.data.store).ids()
           if split_of(i, cfg.data.split_seed, tuple(cfg.data.split_fractions)) == "val"]
    return cfg.data.store, ids


def training_data_summary(store: str) -> dict:
    """What the model was trained on (functionals, basis sets, time steps), checked by ``rtml propagate``."""

    idx = TrajectoryStore(store).index
    return {"store": str(store), "functionals": sorted({e["functional"] for e in idx}),
            "bases": sorted({e["basis"] for e in idx}), "dt": sorted({float(e["dt"]) for e in idx})}


def export_model(module, cfg: TrainConfig, out: Path, uri: str, run_id: str, selected: dict | None = None,
                 last_state: dict | None = None) -> dict:
    """``module``'s weights as ``model.pt`` + MLflow model (logged first), then evaluated on the held-out set (a
    failed evaluation is recorded in ``summary.json`` as ``evaluation_error`` and the tag ``rtml.evaluation=failed``;
    the model stays logged); ``selected``: which
    evaluation step's weights these are (model selection by held-out rollouts) and their score; ``last_state``:
    the last step's weights when another step was selected (``model_last.pt``, for comparisons)."""
    import mlflow

    out.mkdir(parents=True, exist_ok=True)
    path = save_model(module, out / "model.pt", meta={"mlflow_run_id": run_id, "recipe": cfg.recipe,
                                                      "data": training_data_summary(cfg.data.store),
                                                      "selected": selected})
    extra = []
    if last_state is not None:
        best = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
        module.load_state_dict(last_state)
        extra.append(save_model(module, out / "model_last.pt", meta={"mlflow_run_id": run_id, "recipe": cfg.recipe,
                                                                      "step": cfg.loop.max_steps}))
        module.load_state_dict(best)
    save_yaml(cfg, out / "config.yaml")
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=run_id, log_system_metrics=False):  # the model first: evaluation cannot cost it
        for f in [out / "config.yaml", path, *extra]:
            mlflow.log_artifact(str(f))
        log_model(path)
    store, ids = held_out_ids(cfg)
    t0 = time.perf_counter()
    summary = {"model": str(path), "held_out_store": store, "selected": selected}
    plots = []
    try:
        module = load_model(path)  # a clean copy: the engine's module carries DeepSpeed hooks and process groups
        results = evaluate_store(module, store, ids, cfg.eval, progress=False) if ids is None or ids else []
        agg = aggregate(results)
        plots = plot_results(results, out / "plots") if results else []
        per_traj = per_trajectory(results)
        summary.update(held_out=[r["id"] for r in results], eval_seconds=time.perf_counter() - t0, rollout=agg,
                       per_trajectory=per_traj, regimes=summarize_regimes(per_traj), plots=[str(p) for p in plots])
        tracking.log_metrics(uri, run_id, {f"eval/{k}": v for k, v in agg.items()}, step=cfg.loop.max_steps)
    except Exception as exc:  # noqa: BLE001 - any evaluation failure is reported, the logged model stays
        summary["evaluation_error"] = f"{type(exc).__name__}: {exc}"
        tracking.client(uri).set_tag(run_id, EVAL_TAG, "failed")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    with mlflow.start_run(run_id=run_id, log_system_metrics=False):
        for f in [out / "summary.json", *plots]:
            mlflow.log_artifact(str(f))
    return summary
