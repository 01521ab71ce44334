"""``run(cfg)``: one meta-training run = one Ray Train ``TorchTrainer`` fit of :func:`meta_train_fn` = one MLflow
run. Same name + storage resumes from the last checkpoint into the same MLflow run (as ``rtml train``)."""

from __future__ import annotations

import time

from rtml.meta.config import MetaTrainConfig, check
from rtml.meta.tasks import TaskSampler
from rtml.meta.worker import meta_train_fn
from rtml.platform.modelio import load_model
from rtml.platform.workers.launch import absolute_local, launch, reachable_tracking_uri


def absolute_paths(cfg: MetaTrainConfig) -> None:
    """Workers do not run in the driver's directory: make local paths absolute."""
    cfg.tasks.store, cfg.model.init = absolute_local(cfg.tasks.store), absolute_local(cfg.model.init)
    cfg.out, cfg.storage = absolute_local(cfg.out), absolute_local(cfg.storage)


def check_inputs(cfg: MetaTrainConfig, uri: str) -> dict:
    """Fail before Ray starts: the store yields tasks; the initial model loads. -> parent model meta."""
    t = cfg.tasks
    TaskSampler(t.store, t.shots, t.query, t.horizon, t.molecules, t.exclude)
    if not cfg.model.init:
        return {}

    return getattr(load_model(cfg.model.init, "cpu", uri), "rtml_meta", {}) or {}


def run(cfg: MetaTrainConfig) -> dict:
    t0 = time.perf_counter()
    check(cfg)
    absolute_paths(cfg)
    uri = reachable_tracking_uri(cfg)
    parent = check_inputs(cfg, uri)
    tags = {"rtml.kind": "meta-train"}
    if parent.get("mlflow_run_id"):
        tags["rtml.parent_model_run_id"] = parent["mlflow_run_id"]
    return launch(cfg, uri, t0, train_fn=meta_train_fn, tags=tags)
