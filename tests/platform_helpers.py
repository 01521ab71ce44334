"""Helpers for the platform tests: tiny training configs and MLflow queries."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from rtml.cli import recipes
from rtml.platform.configio import updated
from rtml.platform.train.config import TrainConfig


def tiny_config(tmp_path, store, val_store, name="t", **loop) -> TrainConfig:
    """Debug recipe, 2 CPU workers, short horizons, local MLflow in tmp_path."""
    values = {"data.store": store, "data.val_store": val_store, "data.horizons": [4, 8], "data.steps_per_stage": 10,
              "data.batch_size": 2, "data.val_windows": 2, "eval.max_trajectories": 2, "eval.max_steps": 16,
              "select.max_trajectories": 2, "select.max_steps": 16, "name": name, "out": str(tmp_path / "out" / name),
              "storage": str(tmp_path / "ray"), "tracking.uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
              "scaling.max_failures": 1}
    values.update({f"loop.{k}": v for k, v in {"max_steps": 20, "checkpoint_every": 10, "eval_every": 10,
                                                "log_every": 5, **loop}.items()})
    return updated(recipes.debug(), values)


def runs_named(uri: str, name: str, experiment: str = "rtml"):
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name(experiment)
    return c.search_runs([exp.experiment_id], filter_string=f"tags.`rtml.run_name` = '{name}'")


def spawn_ranks(fn, nprocs: int, *args) -> dict:
    """Run ``fn(rank, port, out, *args)`` in ``nprocs`` processes (torch.multiprocessing) with a free TCP port for
    the process group's rendezvous; returns ``out`` (a shared dict the ranks fill)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.Manager().dict()
    mp.spawn(fn, args=(port, out, *args), nprocs=nprocs, join=True)
    return out
