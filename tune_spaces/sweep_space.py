"""What a sweep space file defines: :class:`SweepSpace` (below the tuner, so spaces import nothing of the
platform: ``rtml.platform.tune`` loads ``tune_spaces/<name>.py`` and reads its ``space()``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(kw_only=True)
class SweepSpace:
    """A search space (one per file in ``tune_spaces/``): ``base`` training recipe (:mod:`rtml.cli.recipes`) or YAML
    file, ``fixed`` = dotted config key -> value for every trial, ``params`` = dotted config key -> ray.tune
    distribution; ASHA on ``metric`` over ``training_iteration`` (one per validation report)."""
    base: str = "debug"
    fixed: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    metric: str = "val_loss"
    mode: str = "min"
    num_samples: int = 4
    max_concurrent_trials: int = 1
    grace_period: int = 1
    reduction_factor: int = 2
    searcher: str = "random"  # random | optuna
    cpus_per_worker: float = 0.49
    num_workers: int = 2
