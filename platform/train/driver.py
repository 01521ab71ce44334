"""``run(cfg)``: one training run = one Ray Train ``TorchTrainer`` fit = one MLflow run.

The driver validates the inputs (stores, tracking server) before any worker starts, then hands the run to the
shared driver (:func:`rtml.platform.workers.launch.launch`) with the surrogate's worker function: the MLflow run is
created (or, when the run name already exists in ``storage``, re-opened) and the workers get everything through
``config``.
"""

from __future__ import annotations

import time

from rtml.datasets.errors import DataError
from rtml.datasets.store.zarr_store import TrajectoryStore
from rtml.platform.train.config import TrainConfig
from rtml.platform.train.export import held_out_ids
from rtml.platform.train.worker import train_fn
from rtml.platform.workers.launch import absolute_local, launch, reachable_tracking_uri


def check_inputs(cfg: TrainConfig) -> None:
    for path in filter(None, (cfg.data.store, cfg.data.val_store)):
        store = TrajectoryStore(path)
        if not len(store):
            raise DataError(path, "index", "at least one trajectory", "an empty store")
    if not cfg.data.val_store and not held_out_ids(cfg)[1]:
        raise DataError(cfg.data.store, "split 'val'", "at least one validation trajectory (the hash split "
                        f"{list(cfg.data.split_fractions)} left none): set data.val_store", "0 trajectories")


def absolute_paths(cfg: TrainConfig) -> None:
    """Workers do not run in the driver's directory: make local paths absolute."""
    cfg.data.store, cfg.data.val_store = absolute_local(cfg.data.store), absolute_local(cfg.data.val_store)
    cfg.out, cfg.storage = absolute_local(cfg.out), absolute_local(cfg.storage)


def run(cfg: TrainConfig) -> dict:
    t0 = time.perf_counter()
    absolute_paths(cfg)
    check_inputs(cfg)
    return launch(cfg, reachable_tracking_uri(cfg), t0, train_fn)
