"""Surrogate speed next to the reference propagator, side by side in one process.

For H2O/6-31G and C6H6/6-31G (LDA reference densities) and the ``small`` and ``base`` presets: model step latency
for one trajectory, and batched rollout throughput (trajectory-steps/s) at batch 1, 16, 256; next to the reference
engine's ms/step for the same molecule. Ratio = reference ms per trajectory-step / model ms per trajectory-step.
CPU by default; ``--device cuda`` for a GPU (the Mamba backend is then chosen by ``dynamics.backend='auto'``).

    python benchmarks/bench_model.py [--batches 1 16 256] [--presets small base] [--device cpu] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from rtml.datasets.engine.run import EngineConfig, propagate
from rtml.datasets.fields import kick
from rtml.datasets.molecules import CATALOG
from rtml.models.inputs import MoleculeBatch, spin_resolved
from rtml.models.rollout import rollout
from rtml.models.surrogate import Surrogate, preset


def _time_rollout(model, mol, rho0, n_steps, device):
    field = torch.zeros(rho0.shape[0], n_steps + 1, 3)
    field[:, 0, 0] = 1e-3
    with torch.no_grad():
        t0 = time.perf_counter()
        rollout(model, mol, rho0, field, n_steps, 0.2, store_every=0)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0


def bench(molecule: str, presets: list[str], batches: list[int], device: str, ref_steps: int) -> list[dict]:
    traj = propagate(CATALOG[molecule], kick(1e-3, (1, 1, 1)), EngineConfig(n_steps=ref_steps))
    ref_ms = traj.meta["ms_per_step"]
    print(f"{molecule}: nbf {traj.nbf}, reference engine {ref_ms:.1f} ms/step ({ref_steps} steps)", flush=True)
    rows = []
    for name in presets:
        model = Surrogate(preset(name)).to(device).eval()
        n_par = sum(p.numel() for p in model.parameters())
        for B in batches:
            mol = MoleculeBatch.from_trajectories([traj] * B, dtype=torch.float32).to(device)
            rho0 = spin_resolved(torch.from_numpy(traj.density[0])).repeat(B, 1, 1, 1).to(device)
            _time_rollout(model, mol, rho0, 2, device)  # warm-up (allocations, static preparation code paths)
            steps, elapsed = 4, 0.0
            while True:
                elapsed = _time_rollout(model, mol, rho0, steps, device) - _time_rollout(model, mol, rho0, 0, device)
                if elapsed > 1.5 or steps >= 256:
                    break
                steps *= 4
            ms_call = 1e3 * elapsed / steps
            tps = B * steps / elapsed
            ratio = ref_ms / (1e3 / tps)
            rows.append({"molecule": molecule, "nbf": traj.nbf, "preset": name, "params": n_par, "batch": B,
                         "model_ms_per_step": ms_call, "traj_steps_per_s": tps, "reference_ms_per_step": ref_ms,
                         "speedup_vs_reference": ratio, "device": device, "backend": model.dynamics.backend})
            print(f"  {name:5s} ({n_par:7d} params) batch {B:4d}: {ms_call:9.2f} ms/step, {tps:9.1f} traj-steps/s, "
                  f"x{ratio:7.1f} vs reference", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--molecules", nargs="+", default=["h2o", "c6h6"])
    ap.add_argument("--presets", nargs="+", default=["small", "base"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 16, 256])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--ref-steps", type=int, default=6)
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
