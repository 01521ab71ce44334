"""Config sections every Ray Train run has, training and meta-training alike: the loop, the workers, MLflow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(kw_only=True)
class LoopConfig:
    max_steps: int = 60  # optimiser steps
    log_every: int = 5  # steps between logged metrics
    checkpoint_every: int = 20  # steps between checkpoints (reported to Ray Train; resume starts there)
    eval_every: int = 20  # steps between validation and model selection
    keep_checkpoints: int = 2  # checkpoints kept in storage
    seed: int = 0  # seed of the model's initial weights and the window draws
    nan_at_step: int | None = None  # fault injection: make the loss NaN at this step (tests the NaN guard)
    nan_in: Literal["loss", "gradient"] = "loss"  # what nan_at_step poisons: the loss, or only its gradients


@dataclass(kw_only=True)
class ScalingSection:
    """The Ray Train worker group (``SPREAD`` placement: one lost node costs one rank)."""
    num_workers: int = 2  # Ray Train workers (ranks)
    use_gpu: bool = False  # one GPU per worker (NCCL)
    cpus_per_worker: float = 1.0  # Ray CPU resource and torch threads per worker
    address: str | None = None  # Ray cluster (None: $RAY_ADDRESS, else a local Ray)
    max_failures: int = 2  # worker-group restarts from the last checkpoint (a dead worker, node or export)
    placement: Literal["PACK", "SPREAD", "STRICT_SPREAD"] = "PACK"  # Ray placement strategy (SPREAD: a node each)


@dataclass(kw_only=True)
class TrackingSection:
    """Where the run is logged (MLflow)."""
    uri: str | None = None  # MLflow tracking URI (None: $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db)
    experiment: str = "rtml"  # MLflow experiment
    run_name: str | None = None  # MLflow run name (None: the run's name)
