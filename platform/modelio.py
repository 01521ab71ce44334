"""Trained-model files: a plain consolidated state dict that loads without DeepSpeed.

``model.pt`` = ``{"format": "rtml-surrogate", "version": 1, "config": <SurrogateConfig as dict>, "state_dict": ...,
"meta": {...}}``, readable with ``torch.load(path, weights_only=True)``. A loaded model carries ``meta`` as
``model.rtml_meta`` (its MLflow run id; for meta-trained models the meta-learner state). :func:`load_model` also takes an MLflow
model URI (``runs:/<id>/model``, ``models:/...``) logged by ``rtml train``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from rtml.datasets.units import ANGSTROM_TO_BOHR
from rtml.models.density_codec import upgrade_decoder_state
from rtml.models.surrogate import Surrogate, SurrogateConfig
from rtml.platform.configio import ConfigError, from_dict, to_dict
from rtml.platform.mlflow_model import local_model_file
from rtml.platform.tracking import resolve_uri

FORMAT, VERSION = "rtml-surrogate", 1


class ModelFileError(ValueError):
    pass


def save_model(model: Surrogate, path: str | Path, meta: dict | None = None) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    torch.save({"format": FORMAT, "version": VERSION, "config": to_dict(model.cfg), "state_dict": sd,
                "meta": meta or {}}, p)
    return p


RETIRED_HEAD_FIELDS = ("head", "h_scale", "d_scale", "extrapolate", "purify_steps")


def upgrade_config(config: dict, source: str = "<model file>") -> dict:
    """A model file's config in today's field names: files written before the cutoffs carried their unit in the name
    had ``geometry.cutoff`` in Å and ``codec.cutoff`` in bohr; files written while there were several heads carry
    ``head`` (only ``kohn_sham`` models still load: the ``unitary`` and ``density`` heads were retired)."""

    config = {k: dict(v) if isinstance(v, dict) else v for k, v in config.items()}
    head = config.get("head", "kohn_sham")
    if head != "kohn_sham":
        raise ModelFileError(f"{source}: field 'config.head': expected 'kohn_sham', got {head!r} (the {head} head "
                             "was retired — its rollouts diverged; retrain with the current rtml)")
    for k in RETIRED_HEAD_FIELDS:
        config.pop(k, None)
    if "cutoff" in config.get("geometry", {}):
        config["geometry"]["cutoff_bohr"] = config["geometry"].pop("cutoff") * ANGSTROM_TO_BOHR
    if "cutoff" in config.get("codec", {}):
        config["codec"]["cutoff_bohr"] = config["codec"].pop("cutoff")
    return config


def load_model(spec: str | Path, device: str | torch.device = "cpu", tracking_uri: str | None = None) -> Surrogate:
    """A model from a ``model.pt`` file, a run directory holding one, or an MLflow model URI (resolved against
    ``tracking_uri``, default $MLFLOW_TRACKING_URI or the local ./mlflow.db)."""
    s = str(spec)
    if s.startswith(("runs:/", "models:/", "mlflow-artifacts:/")):
        return _load_mlflow(s, device, tracking_uri)
    p = Path(s)
    if p.is_dir():
        p = p / "model.pt"
    if not p.is_file():
        raise ModelFileError(f"{spec}: no such model file (expected a model.pt from `rtml train`, a run directory "
                             "holding one, or an MLflow URI runs:/<run_id>/model)")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle/zip errors of arbitrary files
        raise ModelFileError(f"{p}: not an rtml model file ({type(exc).__name__}: {exc})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelFileError(f"{p}: field 'format': expected '{FORMAT}' (an rtml model file), got "
                             f"{blob.get('format') if isinstance(blob, dict) else type(blob).__name__!r}")
    if blob.get("version") != VERSION:
        raise ModelFileError(f"{p}: field 'version': expected {VERSION}, got {blob.get('version')!r}")
    try:
        cfg = from_dict(SurrogateConfig, upgrade_config(blob["config"], str(p)), str(p))
    except ConfigError as exc:
        raise ModelFileError(str(exc)) from None
    model = Surrogate(cfg)
    model.load_state_dict(upgrade_decoder_state(blob["state_dict"], model.decoder))  # files before issue 29 too
    model.rtml_meta = dict(blob.get("meta") or {})  # provenance: MLflow run id, meta-learner state, ...
    return model.to(device).eval()


def _load_mlflow(uri: str, device, tracking_uri: str | None) -> Surrogate:
    """The ``model.pt`` of an MLflow model (:mod:`rtml.platform.mlflow_model`), read like any model file."""
    import mlflow.exceptions

    try:
        path = local_model_file(uri, resolve_uri(tracking_uri))
    except (mlflow.exceptions.MlflowException, OSError) as exc:
        raise ModelFileError(f"{uri}: MLflow model not found ({str(exc).splitlines()[0]})") from None
    model = load_model(path, device)
    if not model.rtml_meta.get("mlflow_run_id") and uri.startswith("runs:/"):
        model.rtml_meta["mlflow_run_id"] = uri.split("/")[1]
    return model
