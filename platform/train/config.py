"""The training configuration: typed sections whose defaults are the ``debug`` recipe (CI, smoke runs).

The other recipes (``small``, ``corpus``, ``stride8``, ``base``) are functions in :mod:`rtml.cli.recipes`;
``rtml train RECIPE_OR_YAML [--section.field VALUE ...]`` starts from one and sets fields by flag. The fully resolved
config is saved as ``config.yaml`` in the run directory and logged to MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rtml.models.losses import LossConfig
from rtml.models.surrogate import SurrogateConfig, preset
from rtml.platform.configio import ConfigError, require_positive
from rtml.platform.evaluate import RolloutEvalConfig
from rtml.platform.workers.sections import LoopConfig, ScalingSection, TrackingSection


@dataclass(kw_only=True)
class DataConfig:
    """The training windows: which stores, the horizon curriculum, batch sizes."""
    store: str = "runs/quickstart/train.zarr"  # Zarr trajectory store (path or URL)
    val_store: str | None = None  # held-out store (None: the 'val' split of store)
    horizons: tuple[int, ...] = (8, 16)  # window lengths (steps) of the horizon curriculum, steps_per_stage each
    steps_per_stage: int = 40  # optimiser steps per curriculum stage
    batch_size: int = 4  # windows per worker per step
    val_windows: int = 8  # windows per worker for validation
    split_seed: int = 0  # seed of the hash split of trajectories into train/val/test
    split_fractions: tuple[float, ...] = (0.8, 0.1, 0.1)  # train/val/test fractions of the hash split
    prefetch: int = 2  # batches a background thread reads ahead
    max_geometries: int | None = None  # train on geometries 0..N-1 of each molecule only (learning curves; None: all)


@dataclass(kw_only=True)
class OptimConfig:
    lr: float = 3e-3  # peak AdamW learning rate (after warm-up; cosine decay)
    weight_decay: float = 0.0  # AdamW weight decay
    warmup_steps: int = 10  # linear warm-up steps
    min_lr_ratio: float = 0.1  # cosine decay to lr * min_lr_ratio at max_steps
    grad_clip: float = 1.0  # global gradient-norm clip


@dataclass(kw_only=True)
class DeepSpeedSection:
    """``zero_stage`` 0/1/2; ``precision`` 'fp32' or 'bf16' (torch autocast on GPU; the physics stays complex64)."""
    zero_stage: Literal[0, 1, 2] = 1  # ZeRO stage (3: refused, see check())
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: torch autocast on GPU workers (the physics stays complex64)


@dataclass(kw_only=True)
class SelectionConfig:
    """Model selection by held-out rollouts: at every evaluation (``loop.eval_every``) rank 0 rolls the model out on
    up to ``max_trajectories`` held-out trajectories (``data.val_store``, else the 'val' split) for ``max_steps``
    frames and logs ``select/score`` to MLflow; the exported model is the checkpoint with the best score, not the
    last one. ``score``: ``ratio_to_linear`` = geometric mean over trajectories of the dipole nRMSE relative to the
    linear-xc propagator's (every field tier weighs the same), or plain mean ``dipole_nrmse``. ``include_initial``:
    also score the weights training starts from (step 0): with the linear anchor that *is* the linear-xc
    propagator, so a run whose training never beats it on held-out rollouts exports its anchor and says so."""
    enabled: bool = True  # export the checkpoint with the best held-out rollouts (False: the last weights)
    include_initial: bool = True  # also score the starting weights (with the linear anchor: the linear-xc propagator)
    max_trajectories: int = 8  # held-out trajectories rolled out at each evaluation
    max_steps: int = 300  # frames per selection rollout
    score: Literal["ratio_to_linear", "dipole_nrmse"] = "ratio_to_linear"  # geometric mean of the ratio to linear xc, or mean nRMSE


@dataclass(kw_only=True)
class TrainConfig:
    recipe: str = "debug"  # the recipe this config started from (a label: names the run)
    name: str = "rtml-train"  # run name (the default: a new run rtml-<recipe>-<time>; an existing name resumes)
    storage: str = "runs/ray"  # Ray Train storage_path (checkpoints); local dir or URI
    out: str = "runs/train"  # plots, exported model, summary (default: runs/train/<name>)
    data: DataConfig = field(default_factory=DataConfig)
    model: SurrogateConfig = field(default_factory=lambda: preset("debug"))  # the architecture (rtml.models.surrogate)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    deepspeed: DeepSpeedSection = field(default_factory=DeepSpeedSection)
    loop: LoopConfig = field(default_factory=LoopConfig)
    scaling: ScalingSection = field(default_factory=ScalingSection)
    tracking: TrackingSection = field(default_factory=TrackingSection)
    eval: RolloutEvalConfig = field(default_factory=RolloutEvalConfig)  # the end-of-training evaluation = rtml evaluate's defaults
    select: SelectionConfig = field(default_factory=SelectionConfig)  # which checkpoint is exported


def check(cfg: TrainConfig, source: str = "<config>") -> None:
    if cfg.deepspeed.zero_stage not in (0, 1, 2):
        raise ConfigError(source, "deepspeed.zero_stage",
                          "0, 1 or 2 (stage 3 partitions parameters, and the surrogate reads parameters outside "
                          "module forward calls, e.g. static decoder weights)", cfg.deepspeed.zero_stage)
    if cfg.deepspeed.precision == "bf16" and not cfg.scaling.use_gpu:
        raise ConfigError(source, "deepspeed.precision", "'fp32' on CPU workers (bf16 autocast is for GPUs)", "bf16")
    bad = [h for h in cfg.data.horizons if h < 1 or h % cfg.model.bundle]
    if not cfg.data.horizons or bad:
        raise ConfigError(source, "data.horizons", f"positive multiples of model.bundle={cfg.model.bundle}",
                          list(cfg.data.horizons))
    require_positive(source, cfg.loop, "loop", ("max_steps", "log_every", "checkpoint_every", "eval_every"))
    require_positive(source, cfg.scaling, "scaling", ("num_workers",))
    require_positive(source, cfg.select, "select", ("max_trajectories", "max_steps"))
    require_positive(source, cfg.data, "data", ("batch_size",))
