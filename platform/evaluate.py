"""Rollout evaluation of a surrogate on held-out trajectories (``rtml evaluate MODEL STORE``).

For every trajectory: the model rolls out autoregressively from the reference state at frame ``context`` (the
frames before it warm up the recurrent state), driven by the trajectory's field, and is compared with the
reference engine and with the trivial baseline ρ(t) = ρ(t0) (nothing changes):

* ``scaled_l2`` — ‖ρ_pred − ρ_ref‖ / ‖ρ_ref‖ over all rolled-out frames;
* ``dipole_nrmse`` — RMS(μ_pred − μ_ref) / RMS(μ_ref − μ_ref(0)) (the trivial baseline scores ≈ 1);
* ``spectrum_nrmse`` / ``spectrum_overlap`` below 20 eV (kicked trajectories only);
* ``steps_to_violation`` — frames before any Hermiticity/trace/idempotency violation above ``violation_tol``
  (the rollout length when there is none).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rtml.datasets import observables as obs
from rtml.datasets.integrals import dipole_integrals
from rtml.models.inputs import MoleculeBatch, spin_resolved
from rtml.models.physics import violations
from rtml.models.rollout import rollout

METRICS = ("scaled_l2", "dipole_nrmse", "spectrum_nrmse", "spectrum_overlap")


@dataclass(kw_only=True)
class RolloutEvalConfig:
    max_trajectories: int = 4
    max_steps: int | None = None  # frames rolled out per trajectory (None: the whole trajectory)
    context: int = 1
    violation_tol: float = 1e-3


def _total(rho_spin: np.ndarray, n_spin: int) -> np.ndarray:
    """[T, 2, N, N] spin-resolved -> the store's layout [T, n_spin, N, N]."""
    return rho_spin.sum(1, keepdims=True) if n_spin == 1 else rho_spin


@torch.no_grad()
def evaluate_trajectory(model, traj, cfg: RolloutEvalConfig, device=None, source="<memory>") -> dict:
    device = device or torch.device("cpu")
    k, c = model.cfg.bundle, max(1, cfg.context)
    n = traj.n_steps - 1 - c
    if cfg.max_steps:
        n = min(n, cfg.max_steps)
    n -= n % k
    if n < k:
        raise ValueError(f"{source}: trajectory has {traj.n_steps} frames; needs more than context+bundle={c + k}")
    mol = MoleculeBatch.from_trajectories([traj], dtype=torch.float32).to(device)
    rho = spin_resolved(torch.from_numpy(traj.density))  # [T, 2, N, N] complex128
    field = torch.from_numpy(traj.field[c:c + n + 1])[None].float()
    res = rollout(model, mol, rho[c][None].to(device), field.to(device), n, traj.dt, store_every=1,
                  context=rho[:c][None].to(device))
    pred_spin = res.states[0].cpu().to(torch.complex128)  # [n, 2, N, N]
    ref = traj.density[c + 1:c + n + 1]  # [n, S, N, N]
    pred = _total(pred_spin.numpy(), traj.n_spin)
    trivial = np.broadcast_to(traj.density[c], ref.shape)
    r_ints, nuc = dipole_integrals(traj, source)
    mu_ref = obs.dipole_from_density(traj.density[:c + n + 1], r_ints, nuc)  # [c+n+1, 3]
    mu_pred = np.concatenate([mu_ref[:c + 1], obs.dipole_from_density(pred, r_ints, nuc)])
    mu_triv = np.concatenate([mu_ref[:c + 1], np.broadcast_to(mu_ref[c], (n, 3))])
    seg = slice(c + 1, c + n + 1)
    out = {"id": source, "molecule": traj.molecule, "frames": n, "time": traj.time[:c + n + 1],
           "mu_ref": mu_ref, "mu_pred": mu_pred,
           "model": {"scaled_l2": obs.scaled_l2(pred, ref), "dipole_nrmse": obs.dipole_nrmse(mu_pred[seg], mu_ref[seg])},
           "trivial": {"scaled_l2": obs.scaled_l2(trivial, ref),
                       "dipole_nrmse": obs.dipole_nrmse(mu_triv[seg], mu_ref[seg])}}
    s = torch.from_numpy(traj.overlap)[None]
    n_sigma = torch.diagonal(rho[0] @ s.to(rho.dtype), dim1=-2, dim2=-1).sum(-1).real  # [1, 2]
    v = violations(pred_spin[:, None], s, n_sigma)  # each [n, 1]
    worst = torch.stack([x[:, 0] for x in v.values()]).amax(0)  # [n]
    bad = torch.nonzero(worst > cfg.violation_tol)
    out["model"]["steps_to_violation"] = int(bad[0, 0]) if len(bad) else n
    out["model"]["max_violation"] = float(worst.max())
    if traj.meta.get("field_spec", {}).get("kind") == "delta":
        kappa, t_kick = obs.kick_of(traj)
        pol = traj.meta["field_spec"]["polarization"]
        spec = {}
        for name, mu in (("ref", mu_ref), ("model", mu_pred), ("trivial", mu_triv)):
            spec[name] = obs.absorption_spectrum(out["time"], mu, kappa, direction=pol, t_kick=t_kick,
                                                 window="gauss")
        om = spec["ref"][0]
        for name in ("model", "trivial"):
            out[name]["spectrum_nrmse"] = obs.spectrum_nrmse(om, spec[name][1], spec["ref"][1])
            out[name]["spectrum_overlap"] = obs.spectrum_overlap(om, spec[name][1], spec["ref"][1])
        out["spectra"] = {k: v[1] for k, v in spec.items()} | {"omega": om}
    return out


def aggregate(results: list[dict]) -> dict:
    """Mean of each metric over trajectories, for the model and the trivial baseline."""
    agg = {}
    for who in ("model", "trivial"):
        for m in (*METRICS, "steps_to_violation"):
            vals = [r[who][m] for r in results if m in r[who]]
            if vals:
                agg[f"{who}/{m}"] = float(np.mean(vals))
    return agg


def evaluate_store(model, store_path: str, ids: list[str] | None, cfg: RolloutEvalConfig,
                   device=None, progress: bool = True) -> list[dict]:
    from tqdm.auto import tqdm

    from rtml.datasets.store.zarr_store import TrajectoryStore

    store = TrajectoryStore(store_path)
    ids = (ids or store.ids())[:cfg.max_trajectories]
    model.eval()
    return [evaluate_trajectory(model, store.read(i), cfg, device, source=i)
            for i in tqdm(ids, desc="evaluate", disable=not progress, unit="traj")]


def plot_results(results: list[dict], out_dir: str | Path) -> list[Path]:
    """Dipole vs reference for every trajectory (one panel each); spectra of the kicked ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, axes = plt.subplots(len(results), 1, figsize=(7, 2.2 * len(results)), squeeze=False)
    for ax, r in zip(axes[:, 0], results):
        ax_i = int(np.argmax(np.ptp(r["mu_ref"], axis=0)))
        ax.plot(r["time"], r["mu_ref"][:, ax_i], "k-", lw=1.2, label="reference (PySCF RT-TDDFT)")
        ax.plot(r["time"], r["mu_pred"][:, ax_i], "C1--", lw=1.2, label="rtml rollout")
        ax.set_title(f"{r['id']}: μ_{'xyz'[ax_i]}  (dipole nRMSE {r['model']['dipole_nrmse']:.3f}, "
                     f"trivial {r['trivial']['dipole_nrmse']:.3f})", fontsize=8)
        ax.set_ylabel("dipole (a.u.)")
    axes[-1, 0].set_xlabel("time (a.u.)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    paths.append(out_dir / "dipole.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    kicked = [r for r in results if "spectra" in r]
    if kicked:
        fig, axes = plt.subplots(len(kicked), 1, figsize=(7, 2.2 * len(kicked)), squeeze=False)
        for ax, r in zip(axes[:, 0], kicked):
            ev = r["spectra"]["omega"] * obs.HARTREE_EV
            band = ev <= 20
            ax.plot(ev[band], r["spectra"]["ref"][band], "k-", label="reference")
            ax.plot(ev[band], r["spectra"]["model"][band], "C1--", label="rtml")
            ax.set_title(f"{r['id']}: spectrum overlap {r['model']['spectrum_overlap']:.3f}", fontsize=8)
        axes[-1, 0].set_xlabel("energy (eV)")
        axes[0, 0].legend(fontsize=7)
        fig.tight_layout()
        paths.append(out_dir / "spectrum.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def format_table(agg: dict) -> str:
    rows = [f"{'metric':<22}{'rtml':>12}{'trivial ρ(t)=ρ(t0)':>22}"]
    for m in (*METRICS, "steps_to_violation"):
        if f"model/{m}" in agg:
            t = agg.get(f"trivial/{m}")
            rows.append(f"{m:<22}{agg[f'model/{m}']:>12.4f}{'' if t is None else f'{t:.4f}':>22}")
    return "\n".join(rows)
