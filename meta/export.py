"""End of meta-training on rank 0: ``model.pt`` carrying the meta-learner state, MLflow artifacts and model."""

from __future__ import annotations

import json
from pathlib import Path

from rtml.meta.config import MetaTrainConfig
from rtml.meta.learner import MetaLearner
from rtml.platform.configio import save_yaml
from rtml.platform.mlflow_model import log_model
from rtml.platform.modelio import save_model


def export_meta_model(learner: MetaLearner, cfg: MetaTrainConfig, out: Path, uri: str, run_id: str) -> dict:
    """Writes ``out/model.pt`` (meta: MLflow run id, the run id of the model it started from, ``meta_learner`` =
    :meth:`MetaLearner.state`), ``summary.json``, ``config.yaml``; logs them and the MLflow model (:mod:`rtml.platform.mlflow_model`: model.pt + pyfunc, nothing pickled)."""
    import mlflow

    out.mkdir(parents=True, exist_ok=True)
    init_meta = getattr(learner.model, "rtml_meta", {}) or {}
    state = {**learner.state(), "objective": cfg.tasks.objective, "horizon": cfg.tasks.horizon}
    meta = {"mlflow_run_id": run_id, "recipe": f"meta-{cfg.recipe}", "meta_learner": state,
            "init_model": cfg.model.init, "init_run_id": init_meta.get("mlflow_run_id", "")}
    path = save_model(learner.model, out / "model.pt", meta=meta)
    summary = {"model": str(path), "meta_learner": state, "tasks": sorted(
        set(cfg.tasks.molecules) - set(cfg.tasks.exclude)) or "all but " + ",".join(cfg.tasks.exclude)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    save_yaml(cfg, out / "config.yaml")
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=run_id, log_system_metrics=False):
        for f in (out / "config.yaml", out / "summary.json", path):
            mlflow.log_artifact(str(f))
        log_model(path)
    return summary
