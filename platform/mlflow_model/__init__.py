"""The MLflow model of an rtml run: ``model.pt`` as an artifact and a models-from-code pyfunc (nothing pickled).

``mlflow.pytorch.log_model`` pickles the module: loading it executes arbitrary code, as MLflow itself warns.
Here the logged model is ``model.pt`` (read with ``torch.load(weights_only=True)``) plus :mod:`.pyfunc`, a
source file MLflow runs to build the wrapper (MLflow's "models from code"). One helper owns the requirements
pin (the torch of this environment).
"""

from __future__ import annotations

from pathlib import Path

ARTIFACT = "model.pt"
PYFUNC_SOURCE = Path(__file__).with_name("pyfunc.py")


def requirements() -> list[str]:
    """pip requirements of the logged model: the exact torch build family in use, and rtml."""
    import torch

    return [f"torch=={torch.__version__.split('+')[0]}", "rtml"]


def log_model(path: str | Path, name: str = "model") -> None:
    """Log ``path`` (a ``model.pt``) as the MLflow model ``name`` of the active MLflow run."""
    import mlflow.pyfunc

    mlflow.pyfunc.log_model(name=name, python_model=str(PYFUNC_SOURCE), artifacts={ARTIFACT: str(path)},
                            pip_requirements=requirements())


def local_model_file(uri: str, tracking_uri: str) -> Path:
    """Download an MLflow model URI (``runs:/<id>/model``, ``models:/...``) and return its ``model.pt``."""
    import mlflow
    import mlflow.artifacts

    mlflow.set_tracking_uri(tracking_uri)  # MLflow 3 resolves runs:/<id>/<name> to a logged model of that store
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    found = sorted(local.rglob(ARTIFACT))
    if not found:
        raise FileNotFoundError(f"{uri}: no {ARTIFACT} in the MLflow model (logged by an older rtml?)")
    return found[0]
