"""Rollout cost per a.u. of simulated time: the surrogate next to the reference engine and the physics baselines,
side by side in one process.

For each molecule (LDA,VWN/6-31G reference, dt = 0.2 a.u.): the reference engine's ms/step (Magnus-2 with
self-consistent midpoint), then frozen-xc and linear-xc (:mod:`rtml.models.baselines`) and the Kohn–Sham-head
surrogate presets, each at batch 1 and batched; reported as ms per trajectory per a.u. of simulated time and as the
ratio to the reference engine. A model step spans one engine step (``bundle`` 1). Accuracy at these costs:
``rtml evaluate`` (docs/benchmarks.md). CPU by default; ``--device cuda`` for a GPU.

    python benchmarks/bench_model.py [--molecules h2o lih] [--batches 1 16] [--presets debug small] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from rtml.datasets.engine.run import EngineConfig, propagate
from rtml.datasets.fields import kick
from rtml.datasets.kohn_sham import kohn_sham_terms, static_of
from rtml.datasets.molecules import CATALOG
from rtml.models.baselines import FrozenXC, LinearXC
from rtml.models.inputs import MoleculeBatch, spin_resolved
from rtml.models.rollout import rollout
from rtml.models.surrogate import Surrogate, preset

DT = 0.2


def _time_rollout(model, mol, rho0, n_steps, device):
    field = torch.zeros(rho0.shape[0], n_steps + 1, 3, dtype=torch.float64)
    field[:, 0, 0] = 1e-3
    with torch.no_grad():
        t0 = time.perf_counter()
        rollout(model, mol, rho0, field, n_steps, DT, store_every=0)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0


def _ms_per_traj_step(model, mol, rho0, device) -> float:
    _time_rollout(model, mol, rho0, 2, device)  # warm-up
    steps = 8
    while True:
        elapsed = _time_rollout(model, mol, rho0, steps, device) - _time_rollout(model, mol, rho0, 0, device)
        if elapsed > 1.5 or steps >= 512:
            return 1e3 * elapsed / (steps * rho0.shape[0])
        steps *= 4


def bench(molecule: str, presets: list[str], batches: list[int], device: str, ref_steps: int) -> list[dict]:
    traj = propagate(CATALOG[molecule], kick(1e-3, (1, 1, 1)), EngineConfig(n_steps=ref_steps))
    ref_ms = traj.meta["ms_per_step"]
    print(f"{molecule}: nbf {traj.nbf}; reference engine {ref_ms:.1f} ms/step = {ref_ms / DT:.1f} ms per a.u. "
          f"({ref_steps} steps)", flush=True)
    terms = kohn_sham_terms(static_of(traj), traj.density[0])  # computed once, replicated over the batch
    rows = [{"molecule": molecule, "nbf": traj.nbf, "predictor": "reference", "batch": 1,
             "ms_per_traj_au": ref_ms / DT, "speedup_vs_reference": 1.0}]
    predictors = [("frozen_xc", lambda: FrozenXC()), ("linear_xc", lambda: LinearXC())]
    predictors += [(f"rtml-{p}", lambda p=p: Surrogate(preset(p))) for p in presets]
    for name, make in predictors:
        model = make().to(device).eval()
        for B in batches:
            mol = MoleculeBatch.from_trajectories([traj] * B, dtype=torch.float32,
                                                  ks_terms=[terms] * B).to(device)
            rho0 = spin_resolved(torch.from_numpy(traj.density[0])).repeat(B, 1, 1, 1).to(device)
            ms = _ms_per_traj_step(model, mol, rho0, device)
            row = {"molecule": molecule, "nbf": traj.nbf, "predictor": name, "batch": B, "ms_per_traj_au": ms / DT,
                   "speedup_vs_reference": ref_ms / ms, "device": device}
            rows.append(row)
            print(f"  {name:12s} batch {B:4d}: {ms / DT:8.2f} ms per trajectory per a.u.  "
                  f"x{ref_ms / ms:7.1f} vs reference", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--molecules", nargs="+", default=["h2o", "lih"])
    ap.add_argument("--presets", nargs="+", default=["debug", "small"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--ref-steps", type=int, default=21)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {a.device}")
    rows = []
    for m in a.molecules:
        rows += bench(m, a.presets, a.batches, a.device, a.ref_steps)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
