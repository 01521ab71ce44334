"""MLflow tracking: URI resolution, reachability check, runs created by the driver and written by rank 0.

Embedded default: ``sqlite:///<cwd>/mlflow.db`` with artifacts in ``<cwd>/mlartifacts`` (no server). A remote server
comes from ``tracking.uri`` / ``--tracking-uri`` or ``$MLFLOW_TRACKING_URI``; an unreachable one fails before any
training starts. The driver creates the run (so a restarted worker group keeps writing to the same run) and passes
its id to the workers; only rank 0 logs.
"""

from __future__ import annotations

import os
import platform as _stdlib_platform
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from rtml.platform.configio import flatten, to_dict


class TrackingError(RuntimeError):
    pass


def resolve_uri(uri: str | None = None) -> str:
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Raise :class:`TrackingError` if an http(s) tracking server does not answer ``/health``."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as r:
            if r.status != 200:
                raise TrackingError(f"MLflow tracking server {uri} answered /health with HTTP {r.status}")
    except (urllib.error.URLError, OSError) as exc:
        raise TrackingError(f"MLflow tracking server {uri} is unreachable ({exc}); start it, fix --tracking-uri / "
                            "MLFLOW_TRACKING_URI, or unset them to use the local store ./mlflow.db") from None


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def experiment_id(uri: str, name: str) -> str:
    c = client(uri)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()
    return c.create_experiment(name, artifact_location=location)


def git_commit() -> str:
    try:
        here = Path(__file__).resolve().parent
        return subprocess.run(["git", "rev-parse", "HEAD"], check=False, cwd=here, capture_output=True, text=True,
                              timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict:
    import deepspeed
    import ray
    import torch

    return {"version.torch": torch.__version__, "version.ray": ray.__version__,
            "version.deepspeed": deepspeed.__version__, "version.python": _stdlib_platform.python_version()}


def start_run(uri: str, experiment: str, run_name: str | None, cfg=None, tags: dict | None = None,
              parent_run_id: str | None = None) -> str:
    """Create a run (nested under ``parent_run_id`` if given) with the config as params; returns its id."""
    c = client(uri)
    all_tags = {"rtml.git_commit": git_commit(), **versions(), **(tags or {})}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = c.create_run(experiment_id(uri, experiment), run_name=run_name, tags=all_tags)
    if cfg is not None:
        log_params(uri, run.info.run_id, flatten(to_dict(cfg)))
    return run.info.run_id


def log_params(uri: str, run_id: str, params: dict) -> None:
    from mlflow.entities import Param

    items = [Param(k, str(v)[:6000]) for k, v in params.items()]
    for i in range(0, len(items), 100):
        client(uri).log_batch(run_id, params=items[i:i + 100])


def log_metrics(uri: str, run_id: str, metrics: dict, step: int) -> None:
    import time

    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    items = [Metric(k, float(v), ts, step) for k, v in metrics.items() if v is not None]
    client(uri).log_batch(run_id, metrics=items)


def find_run(uri: str, experiment: str, tag: str, value: str) -> str | None:
    """Id of the newest run in ``experiment`` with tag ``tag`` = ``value`` (to resume into the same run)."""
    c = client(uri)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = c.search_runs([exp.experiment_id], filter_string=f"tags.`{tag}` = '{value}'", max_results=1,
                         order_by=["attributes.start_time DESC"])
    return runs[0].info.run_id if runs else None
