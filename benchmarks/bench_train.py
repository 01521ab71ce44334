"""Training throughput with 1 and 2 Ray Train + DeepSpeed CPU workers, side by side, and the data-loader rate.

Same store, model, batch size per worker and steps; each configuration is a real `TorchTrainer` run (ZeRO-1, gloo).
Throughput = windows/s over all workers from the run's own `train/windows_per_s` metric (first log interval, which
includes start-up, dropped). The loader rate is one process reading and collating windows with no model.

    python benchmarks/bench_train.py --store runs/quickstart/train.zarr --val-store runs/quickstart/heldout.zarr [--steps 120] [--preset debug]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from rtml.cli import recipes
from rtml.models.surrogate import preset as model_preset
from rtml.platform.configio import updated
from rtml.platform.train.data import WindowStream
from rtml.platform.train.driver import absolute_paths
from rtml.platform.train.worker import train_fn
from rtml.platform.workers.launch import fit, init_ray, open_run


def loader_rate(store: str, horizon: int, batch: int, n: int = 30) -> float:
    s = WindowStream(store, "train", (horizon,), 1, batch)
    s.batch(0)
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        s.batch(i)
    return n * batch / (time.perf_counter() - t0)


def train_rate(store: str, val_store: str, workers: int, steps: int, preset: str, horizon: int, batch: int, tmp: Path) -> float:
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    cfg = updated(recipes.debug(), {
        "data.store": store, "data.val_store": val_store, "data.horizons": [horizon], "data.batch_size": batch,
        "loop.max_steps": steps, "loop.log_every": max(steps // 6, 1), "loop.checkpoint_every": steps,
        "loop.eval_every": steps, "eval.max_trajectories": 0, "scaling.num_workers": workers,
        "scaling.cpus_per_worker": 2 / workers, "name": f"bench-{workers}w", "out": str(tmp / f"out{workers}"),
        "storage": str(tmp / "ray"), "tracking.uri": uri})
    cfg.model = model_preset(preset)
    absolute_paths(cfg)
    run_id = open_run(cfg, uri)
    fit(cfg, uri, run_id, train_fn)
    hist = MlflowClient(uri).get_metric_history(run_id, "train/windows_per_s")
    return statistics.mean(m.value for m in sorted(hist, key=lambda m: m.step)[1:])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--store", default="runs/quickstart/train.zarr")
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--val-store", default="runs/quickstart/heldout.zarr")
    p.add_argument("--preset", default="debug")
    p.add_argument("--horizon", type=int, default=16)
    p.add_argument("--batch", type=int, default=4, help="windows per worker per step")
    a = p.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        init_ray(recipes.debug())
        load = loader_rate(a.store, a.horizon, a.batch)
        r1 = train_rate(a.store, a.val_store, 1, a.steps, a.preset, a.horizon, a.batch, tmp)
        r2 = train_rate(a.store, a.val_store, 2, a.steps, a.preset, a.horizon, a.batch, tmp)
    print(f"\nstore {a.store}, preset {a.preset}, horizon {a.horizon}, {a.batch} windows/worker/step, "
          f"{a.steps} steps, {os.cpu_count()} cores")
    print(f"{'configuration':<34}{'windows/s':>12}")
    print(f"{'data loader (1 process, no model)':<34}{load:>12.1f}")
    print(f"{'train, 1 worker x 2 threads':<34}{r1:>12.1f}")
    print(f"{'train, 2 workers x 1 thread':<34}{r2:>12.1f}")
    print(f"2 workers / 1 worker: x{r2 / r1:.2f};  loader / 2-worker consumption: x{load / r2:.1f}")


if __name__ == "__main__":
    main()
