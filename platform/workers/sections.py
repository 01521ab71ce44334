"""Config sections every Ray Train run has, training and meta-training alike: the loop, the workers, MLflow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(kw_only=True)
class LoopConfig:
    max_steps: int = 60
    log_every: int = 5
    checkpoint_every: int = 20
    eval_every: int = 20
    keep_checkpoints: int = 2
    seed: int = 0
    nan_at_step: int | None = None  # fault injection: make the loss NaN at this step (tests the NaN guard)
    nan_in: Literal["loss", "gradient"] = "loss"  # what nan_at_step poisons: the loss, or only its gradients


@dataclass(kw_only=True)
class ScalingSection:
    """``address``: Ray cluster (None: RAY_ADDRESS, else a local Ray); ``cpus_per_worker`` is the Ray resource
    and the torch thread count; ``max_failures``: worker-group restarts from the last checkpoint (a dead worker,
    node or export); ``placement``: Ray's placement strategy for the workers (``SPREAD``: one per node where it
    can, so one lost node costs one rank)."""
    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    address: str | None = None
    max_failures: int = 2
    placement: Literal["PACK", "SPREAD", "STRICT_SPREAD"] = "PACK"


@dataclass(kw_only=True)
class TrackingSection:
    """``uri``: MLflow tracking URI (None: $MLFLOW_TRACKING_URI, else ``sqlite:///<cwd>/mlflow.db``)."""
    uri: str | None = None
    experiment: str = "rtml"
    run_name: str | None = None
