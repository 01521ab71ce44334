"""Does the window loader keep a GPU fed? Loader windows/s next to the `small` recipe's consumption, as a ratio.

    python benchmarks/bench_loader.py [--store runs/data/train.zarr] [--horizons 16 64 256] [--batch 2]

- loader: one process, :class:`rtml.platform.train.data.WindowStream` (the training loader: plan, concurrent
  chunk reads, collate, Kohn–Sham terms attached), steady state: a first pass over every trajectory computes the
  per-trajectory terms (reported separately), then ``--batches`` batches are timed.
- consumption: one training step of the `small` model on these batches (forward + backward of the training loss,
  no optimiser), timed on this CPU, and its operator count from ``torch.profiler``. No GPU is measured here; the
  GPU figure is a bound: a step cannot take less than (operators) x (launch overhead per kernel,
  ``--launch-us``, 5 us by default: CUDA's launch latency on current GPUs is 2-10 us) because the `small` model
  is launch-bound at this batch size (a few GFLOP per step). The bound over-states the GPU's appetite, so
  ``loader / GPU bound >= 10`` is a conservative check of the issue's goal.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from rtml.models.losses import LossConfig
from rtml.models.surrogate import Surrogate, preset
from rtml.platform.train.data import WindowStream
from rtml.platform.train.objective import window_loss


def loader_rate(store: str, horizon: int, batch: int, n: int) -> tuple[float, float]:
    """-> (windows/s in steady state, seconds of the first pass that attaches the Kohn–Sham terms)."""
    s = WindowStream(store, "train", (horizon,), 1, batch)
    t0 = time.perf_counter()
    for tid in s.n_steps:  # first touch of every trajectory: static data + Kohn–Sham terms, once per process
        s.reader.sample_many([(tid, 2, horizon)])
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        s.batch(i)
    return n * batch / (time.perf_counter() - t0), warm


def step_cost(store: str, horizon: int, batch: int, reps: int) -> dict:
    model = Surrogate(preset("small"))
    s = WindowStream(store, "train", (horizon,), 1, batch, xc_potential=True)
    batches = [s.batch(i) for i in range(reps + 1)]
    dev = torch.device("cpu")

    def step(b):
        model.zero_grad(set_to_none=True)
        total, *_ = window_loss(model, b, LossConfig(), dev)
        total.backward()

    step(batches[0])  # warm-up
    t0 = time.perf_counter()
    for b in batches[1:]:
        step(b)
    cpu_s = (time.perf_counter() - t0) / reps
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step(batches[1])
    # operators that would be GPU kernels: leaf aten ops (no children), excluding views and metadata
    skip = ("aten::view", "aten::reshape", "aten::as_strided", "aten::empty", "aten::t", "aten::transpose",
            "aten::permute", "aten::expand", "aten::unsqueeze", "aten::squeeze", "aten::select", "aten::slice",
            "aten::detach", "aten::alias", "aten::_unsafe_view", "aten::resolve_conj", "aten::resolve_neg",
            "aten::lift_fresh", "aten::empty_strided", "aten::unbind", "aten::split", "aten::chunk",
            "aten::diagonal", "aten::narrow", "aten::view_as_real", "aten::view_as_complex", "aten::_conj",
            "aten::conj", "aten::result_type", "aten::is_nonzero", "aten::item", "aten::_local_scalar_dense")
    kernels = sum(1 for e in prof.events() if e.name.startswith("aten::") and not e.cpu_children
                  and e.name not in skip)
    return {"cpu_s_per_step": cpu_s, "kernels_per_step": kernels}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--store", default="runs/data/train.zarr")
    p.add_argument("--horizons", type=int, nargs="+", default=[16, 64, 256], help="the small recipe's curriculum")
    p.add_argument("--batch", type=int, default=2, help="windows per worker per step (small recipe: 2)")
    p.add_argument("--batches", type=int, default=40, help="timed loader batches per horizon")
    p.add_argument("--reps", type=int, default=3, help="timed training steps per horizon")
    p.add_argument("--launch-us", type=float, default=5.0)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    for h in a.horizons:
        rate, warm = loader_rate(a.store, h, a.batch, a.batches)
        cost = step_cost(a.store, h, a.batch, a.reps)
        gpu_s = cost["kernels_per_step"] * a.launch_us * 1e-6
        row = {"horizon": h, "loader_windows_per_s": rate, "loader_first_pass_s": warm,
               "cpu_windows_per_s": a.batch / cost["cpu_s_per_step"], **cost,
               "gpu_bound_windows_per_s": a.batch / gpu_s, "loader_over_gpu_bound": rate * gpu_s / a.batch}
        rows.append(row)
        print(f"horizon {h:4d}: loader {rate:8.1f} windows/s (first pass {warm:.1f} s) | small model: CPU "
              f"{row['cpu_windows_per_s']:.2f} windows/s, {cost['kernels_per_step']} kernels/step -> GPU <= "
              f"{row['gpu_bound_windows_per_s']:.1f} windows/s | loader / GPU bound = "
              f"{row['loader_over_gpu_bound']:.1f}x")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
