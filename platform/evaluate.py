"""Rollout evaluation of a surrogate on held-out trajectories (``rtml evaluate MODEL STORE``).

For every trajectory: the model rolls out autoregressively from the reference state at frame ``context`` (the
frames before it warm up the recurrent state), driven by the trajectory's field, and is compared with the
reference engine side by side with two physics baselines that need no training: **frozen xc** (the Kohn–Sham
head with the network off, H = h + J[ρ(t)] + V_xc[ρ(0)] + E(t)·r, :class:`rtml.models.baselines.FrozenXC`),
**linear xc** (plus the exact xc kernel at ρ(0) applied to ρ − ρ(0): linear response, exact for weak kicks) and **trivial** ρ(t) = ρ(t0) (nothing changes); at steps larger than the data's (``stride`` > 1) also
**linear xc with the exact linear response** (``linear_xc_lr``: each Magnus step corrected so that its linear part
is the exact linear-response propagator, :mod:`rtml.models.linear_response`; molecules up to
``MAX_COORDS`` = 2N²), the physics competitor at large steps; and for LDA molecules with a grid **the adiabatic LDA on
the local term's grid** (``grid_xc``, :class:`rtml.models.baselines.GridXC`; at stride > 1 with the exact linear
response, ``grid_xc_lr``). Metrics per predictor:

* ``scaled_l2`` — ‖ρ_pred − ρ_ref‖ / ‖ρ_ref‖ over all rolled-out frames;
* ``dipole_nrmse`` — RMS(μ_pred − μ_ref) / RMS(μ_ref − μ_ref(0)) (the trivial baseline scores ≈ 1);
* ``spectrum_nrmse`` / ``spectrum_overlap`` below 20 eV (kicked trajectories only);
* ``max_peak_shift_ev`` — kicked runs: the largest distance from a reference peak (< 20 eV, higher than 5% of the
  strongest) to the nearest predicted peak;
* ``population_nrmse`` — RMS error of the excited-state population n_exc(t) (electrons moved out of the
  ground-state occupied orbitals, :func:`rtml.datasets.observables.excited_population`) over RMS n_exc of the
  reference: what a strong- or resonant-field user reads (noise-dominated for weak fields, where n_exc ~ 1e-6);
* ``ms_per_step`` — wall time of the rollout per trajectory and step (trajectories of equal length are rolled out
  together, up to ``batch`` at a time; this process's threads);
* ``steps_to_violation`` — frames before any Hermiticity/trace/idempotency violation above ``violation_tol``
  (the rollout length when there is none).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rtml.datasets import observables as obs
from rtml.datasets.fields import FieldSpec, field_tier
from rtml.datasets.integrals import dipole_integrals
from rtml.datasets.store.zarr_store import TrajectoryStore
from rtml.models.baselines import FrozenXC, FrozenXCConfig, GridXC, LinearXC
from rtml.models.inputs import MoleculeBatch, spin_resolved
from rtml.models.linear_response import MAX_COORDS
from rtml.models.physics import violations
from rtml.models.rollout import rollout

METRICS = ("dipole_nrmse", "population_nrmse", "scaled_l2", "spectrum_overlap", "spectrum_nrmse", "max_peak_shift_ev",
           "steps_to_violation", "ms_per_step", "ms_per_au")
PREDICTORS = ("model", "frozen_xc", "linear_xc", "linear_xc_lr", "grid_xc", "grid_xc_lr", "trivial")  # rtml.models.baselines


@dataclass(kw_only=True)
class RolloutEvalConfig:
    """``max_steps``: frames rolled out per trajectory (None: all); ``context``: reference frames before the
    rollout start that warm up the model (≥ 1; 2 steps past a kick's discontinuity at t = dt/2); ``baselines``:
    also roll out the frozen-xc and linear-xc physics baselines (the trivial one is free); ``batch``: trajectories
    with the same rollout length, dt and functional rolled out together (padded batch; 1 = one at a time);
    ``stride``: reference frames per step of every predictor (None: the model's ``stride``, 1 without a model) —
    the reference is compared on its own grid at the frames the steps land on, ``max_steps`` and ``context``
    count those steps, and ``ms_per_au`` (milliseconds per simulated a.u.) makes costs comparable across strides."""
    max_trajectories: int = 4  # trajectories evaluated, the store's first ones or of the given ids (0: none)
    max_steps: int | None = None  # frames rolled out per trajectory (None: all)
    context: int = 2  # reference frames that warm the model up before the rollout (2 clears a kick at t = dt/2)
    stride: int | None = None  # reference frames per predictor step (None: the model's own stride)
    violation_tol: float = 1e-3  # a frame violates the physics when its hermiticity/trace/idempotency error exceeds this
    baselines: bool = True  # also roll out the frozen-xc and linear-xc physics baselines
    # also the adiabatic LDA itself on the local-term grid (rtml.models.baselines.GridXC; LDA, <= 70 functions;
    # at stride > 1 with the exact linear response, <= 45) — the physics the learned local term can at best equal;
    # off in training-time selection
    grid_xc: bool = True
    batch: int = 4  # trajectories of equal length, dt and functional rolled out together (1: one at a time)

    def __post_init__(self):
        for name, lo in (("max_trajectories", 0), ("max_steps", 1), ("context", 1), ("batch", 1), ("stride", 1)):
            v = getattr(self, name)
            if v is not None and v < lo:
                raise ValueError(f"{name}: expected an integer >= {lo}, got {v}")


def tier_of(traj) -> str:
    """The field regime of a trajectory (:func:`rtml.datasets.fields.field_tier`) from its recorded field spec;
    'unknown' for imported trajectories without one."""
    spec = traj.meta.get("field_spec")
    return field_tier(FieldSpec.from_dict(spec)) if spec else "unknown"


def _total(rho_spin: np.ndarray, n_spin: int) -> np.ndarray:
    """[T, 2, N, N] spin-resolved -> the store's layout [T, n_spin, N, N]."""
    return rho_spin.sum(1, keepdims=True) if n_spin == 1 else rho_spin


def _timed_rollout(model, mol, rho, field, n, dt, device, field_mid=None):
    """rho [B, c+1, 2, N, N] reference frames (context, then the initial state), field [B, n+1, 3] float64,
    field_mid [B, n, 3] (the field over each step) -> (states [B, n, 2, N, N] complex128, ms per trajectory and
    step)."""
    t0 = time.perf_counter()
    res = rollout(model, mol, rho[:, -1].to(device), field.to(device), n, dt, store_every=1,
                  context=rho[:, :-1].to(device), field_mid=None if field_mid is None else field_mid.to(device))
    ms = 1e3 * (time.perf_counter() - t0) / (n * rho.shape[0])
    return res.states.detach().cpu().to(torch.complex128), ms


def max_peak_shift_ev(omega, s_pred, s_ref, emax_ev: float = 20.0) -> float | None:
    """Largest distance (eV) from a reference peak below ``emax_ev`` to the nearest predicted peak (None when
    the prediction has no peak, e.g. the trivial baseline)."""
    if np.max(np.abs(s_pred)) <= 1e-9 * np.max(np.abs(s_ref)):
        return None  # no signal (the trivial baseline): rounding noise has no peaks to compare
    ref = obs.find_peaks(omega, s_ref) * obs.HARTREE_EV
    pred = obs.find_peaks(omega, s_pred) * obs.HARTREE_EV
    ref = ref[ref <= emax_ev]
    if not len(ref) or not len(pred):
        return None
    return float(np.max(np.min(np.abs(ref[:, None] - pred[None, :]), axis=1)))


def _rollout_length(traj, cfg: RolloutEvalConfig, k: int, source: str) -> tuple[int, int]:
    """(context frames c, rolled-out frames n) of one trajectory for a model of bundle k."""
    c = max(1, cfg.context)
    n = traj.n_steps - 1 - c
    if cfg.max_steps:
        n = min(n, cfg.max_steps)
    n -= n % k
    if n < k:
        raise ValueError(f"{source}: trajectory has {traj.n_steps} frames; needs more than context+bundle={c + k}")
    return c, n


def evaluate_trajectory(model, traj, cfg: RolloutEvalConfig, device=None, source="<memory>") -> dict:
    """Roll ``model`` (None: baselines only) and the baselines out on one trajectory -> per-predictor metrics."""
    return evaluate_trajectories(model, [(traj, source)], cfg, device)[0]


@torch.no_grad()
def evaluate_trajectories(model, items: list, cfg: RolloutEvalConfig, device=None, progress: bool = False) -> list[dict]:
    """``items``: (trajectory, source name) pairs -> per-trajectory metrics of the model (None: baselines only)
    and the baselines; trajectories of equal rollout length, dt and functional are rolled out together
    (``cfg.batch``);
    ``progress``: a bar over trajectory-steps."""
    from tqdm.auto import tqdm

    device = device or torch.device("cpu")
    k = model.cfg.bundle if model is not None else 1
    if model is not None:
        model.eval()
    stride = cfg.stride or (getattr(model.cfg, "stride", 1) if model is not None else 1)
    items = [(traj.strided(stride), src) for traj, src in items]  # the reference at the frames the steps land on
    plans = [(traj, src, *_rollout_length(traj, cfg, k, src)) for traj, src in items]
    groups: dict = {}
    for i, (traj, _, c, n) in enumerate(plans):  # same functional too (one kernel layout a batch)
        groups.setdefault((c, n, float(traj.dt), traj.functional), []).append(i)
    preds: list[dict] = [{} for _ in plans]
    bar = tqdm(total=sum(n for *_, n in plans), desc="evaluate", unit="traj-step", disable=not progress)
    for (c, n, dt, _), idx in groups.items():
        for j in range(0, len(idx), max(1, cfg.batch)):
            chunk = idx[j:j + max(1, cfg.batch)]
            trajs = [plans[i][0] for i in chunk]
            mol = MoleculeBatch.from_trajectories(trajs, dtype=torch.float32, kohn_sham=True).to(device)
            rho = torch.stack([spin_resolved(torch.from_numpy(t.density[:c + 1]), mol.nbf) for t in trajs])
            field = torch.stack([torch.from_numpy(t.field[c:c + n + 1]) for t in trajs]).double()  # [B, n+1, 3]
            mid = torch.stack([torch.from_numpy(t.step_field()[c:c + n]) for t in trajs]).double()  # [B, n, 3]
            predictors = {"model": model} if model is not None else {}
            if cfg.baselines:
                predictors["frozen_xc"] = FrozenXC()
                if mol.ks.has_xc_kernel:
                    predictors["linear_xc"] = LinearXC()
                    if stride > 1 and 2 * mol.nbf ** 2 <= MAX_COORDS:
                        predictors["linear_xc_lr"] = LinearXC(FrozenXCConfig(linear_response="exact"))
                if cfg.grid_xc and mol.ks.grid_kernel0 is not None and mol.ks.grid_functional:
                    if stride == 1:
                        predictors["grid_xc"] = GridXC()
                    elif 2 * mol.nbf ** 2 <= MAX_COORDS and mol.ks.has_xc_kernel:
                        predictors["grid_xc_lr"] = GridXC(FrozenXCConfig(linear_response="exact"))
            for who, m in predictors.items():
                states, ms = _timed_rollout(m, mol, rho, field, n, dt, device, mid)  # [B, n, 2, N, N]
                for b, i in enumerate(chunk):
                    nb = trajs[b].overlap.shape[-1]
                    preds[i][who] = (states[b, :, :, :nb, :nb], ms)
            bar.update(n * len(chunk))
    bar.close()
    return [metrics_of(traj, src, c, n, preds[i], cfg) for i, (traj, src, c, n) in enumerate(plans)]


def metrics_of(traj, source: str, c: int, n: int, runs: dict, cfg: RolloutEvalConfig) -> dict:
    """Per-predictor metrics of one trajectory from its rolled-out states ``runs[who] = (states [n, 2, N, N], ms)``."""
    rho = spin_resolved(torch.from_numpy(traj.density))  # [T, 2, N, N] complex128
    runs = dict(runs)
    runs["trivial"] = (rho[c][None].expand(n, *rho.shape[1:]), 0.0)
    ref = traj.density[c + 1:c + n + 1]  # [n, S, N, N]
    r_ints, nuc = dipole_integrals(traj, source)
    mu_ref = obs.dipole_from_density(traj.density[:c + n + 1], r_ints, nuc)  # [c+n+1, 3]
    out = {"id": source, "molecule": traj.molecule, "functional": traj.functional, "tier": tier_of(traj),
           "frames": n, "time": traj.time[:c + n + 1], "mu_ref": mu_ref, "mu": {}}
    pop_ref = obs.excited_population(traj.density[:c + n + 1], traj.overlap, traj.density[0])  # [c+n+1]
    s = torch.from_numpy(traj.overlap)[None]
    n_sigma = torch.diagonal(rho[0] @ s.to(rho.dtype), dim1=-2, dim2=-1).sum(-1).real  # [1, 2]
    for who, (pred_spin, ms) in runs.items():
        pred = _total(pred_spin.numpy(), traj.n_spin)
        mu = np.concatenate([mu_ref[:c + 1], obs.dipole_from_density(pred, r_ints, nuc)])
        out["mu"][who] = mu
        pop = obs.excited_population(np.concatenate([traj.density[:1], pred]), traj.overlap, traj.density[0])[1:]
        m = {"scaled_l2": obs.scaled_l2(pred, ref), "dipole_nrmse": obs.dipole_nrmse(mu[c + 1:], mu_ref[c + 1:]),
             "population_nrmse": obs.population_nrmse(pop, pop_ref[c + 1:])}
        if who != "trivial":
            v = violations(pred_spin[:, None], s, n_sigma)  # each [n, 1]
            worst = torch.stack([x[:, 0] for x in v.values()]).amax(0)  # [n]
            bad = torch.nonzero(worst > cfg.violation_tol)
            m.update(steps_to_violation=int(bad[0, 0]) if len(bad) else n, max_violation=float(worst.max()),
                     ms_per_step=ms, ms_per_au=ms / float(traj.dt))
        out[who] = m
    if traj.meta.get("field_spec", {}).get("kind") == "delta":
        kappa, t_kick = obs.kick_of(traj)
        pol = traj.meta["field_spec"]["polarization"]
        spec = {name: obs.absorption_spectrum(out["time"], mu, kappa, direction=pol, t_kick=t_kick, window="gauss")
                for name, mu in (("ref", mu_ref), *out["mu"].items())}
        om = spec["ref"][0]
        for who in runs:
            out[who]["spectrum_nrmse"] = obs.spectrum_nrmse(om, spec[who][1], spec["ref"][1])
            out[who]["spectrum_overlap"] = obs.spectrum_overlap(om, spec[who][1], spec["ref"][1])
            shift = max_peak_shift_ev(om, spec[who][1], spec["ref"][1])
            if shift is not None:
                out[who]["max_peak_shift_ev"] = shift
        out["spectra"] = {k: v[1] for k, v in spec.items()} | {"omega": om}
    return out


def aggregate(results: list[dict]) -> dict:
    """``{"who/metric": value}`` over trajectories: the mean, except ``max_peak_shift_ev`` (the largest) and
    ``steps_to_violation`` (the smallest)."""
    agg = {}
    for who in PREDICTORS:
        for m in METRICS:
            vals = [r[who][m] for r in results if who in r and m in r[who]]
            if vals:
                red = np.max if m == "max_peak_shift_ev" else np.min if m == "steps_to_violation" else np.mean
                agg[f"{who}/{m}"] = float(red(vals))
    return agg


def per_trajectory(results: list[dict]) -> list[dict]:
    """The JSON-friendly part of :func:`evaluate_trajectories`' results: id, molecule, functional, field tier,
    frames and each predictor's metrics (no arrays)."""
    keys = ("id", "molecule", "functional", "tier", "frames")
    return [{k: r[k] for k in keys if k in r} | {w: r[w] for w in PREDICTORS if w in r} for r in results]


def as_json(agg: dict) -> dict:
    """``{"model": {...}, "frozen_xc": {...}, "trivial": {...}}`` from :func:`aggregate`'s flat dict."""
    out: dict = {}
    for key, v in agg.items():
        who, m = key.split("/", 1)
        out.setdefault(who, {})[m] = v
    return out


def evaluate_store(model, store_path: str, ids: list[str] | None, cfg: RolloutEvalConfig,
                   device=None, progress: bool = True) -> list[dict]:

    store = TrajectoryStore(store_path)
    ids = (ids or store.ids())[:cfg.max_trajectories]
    return evaluate_trajectories(model, [(store.read(i), i) for i in ids], cfg, device, progress=progress)


STYLE = {"model": ("C1--", "rtml"), "frozen_xc": ("C0:", "frozen xc"), "linear_xc": ("C2-.", "linear xc"),
         "linear_xc_lr": ("C4-.", "linear xc, exact LR"), "grid_xc": ("C5:", "LDA on the grid"),
         "grid_xc_lr": ("C5-.", "LDA on the grid, exact LR"), "trivial": ("C7-", "trivial")}


def plot_results(results: list[dict], out_dir: str | Path) -> list[Path]:
    """Dipole of reference, model and frozen-xc for every trajectory (one panel each); spectra of the kicked ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, axes = plt.subplots(len(results), 1, figsize=(8, 2.2 * len(results)), squeeze=False)
    for ax, r in zip(axes[:, 0], results):
        ax_i = int(np.argmax(np.ptp(r["mu_ref"], axis=0)))
        ax.plot(r["time"], r["mu_ref"][:, ax_i], "k-", lw=1.2, label="reference (PySCF RT-TDDFT)")
        for who in ("model", "frozen_xc", "linear_xc", "linear_xc_lr", "grid_xc", "grid_xc_lr"):
            if who in r["mu"]:
                ax.plot(r["time"], r["mu"][who][:, ax_i], STYLE[who][0], lw=1.0, label=STYLE[who][1])
        title = ", ".join(f"{STYLE[w][1]} {r[w]['dipole_nrmse']:.3f}" for w in PREDICTORS if w in r)
        ax.set_title(f"{r['id']}: μ_{'xyz'[ax_i]}  dipole nRMSE: {title}", fontsize=8)
        ax.set_ylabel("dipole (a.u.)")
    axes[-1, 0].set_xlabel("time (a.u.)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    paths.append(out_dir / "dipole.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    kicked = [r for r in results if "spectra" in r]
    if kicked:
        fig, axes = plt.subplots(len(kicked), 1, figsize=(8, 2.2 * len(kicked)), squeeze=False)
        for ax, r in zip(axes[:, 0], kicked):
            ev = r["spectra"]["omega"] * obs.HARTREE_EV
            band = ev <= 20
            ax.plot(ev[band], r["spectra"]["ref"][band], "k-", label="reference")
            for who in ("model", "frozen_xc", "linear_xc"):
                if who in r["spectra"]:
                    ax.plot(ev[band], r["spectra"][who][band], STYLE[who][0], label=STYLE[who][1])
            title = ", ".join(f"{STYLE[w][1]} {r[w]['spectrum_overlap']:.3f}" for w in ("model", "frozen_xc", "linear_xc")
                              if w in r)
            ax.set_title(f"{r['id']}: spectrum overlap {title}", fontsize=8)
        axes[-1, 0].set_xlabel("energy (eV)")
        axes[0, 0].legend(fontsize=7)
        fig.tight_layout()
        paths.append(out_dir / "spectrum.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def format_table(agg: dict) -> str:
    """Model, frozen-xc and trivial side by side (a column only for predictors present)."""
    cols = [w for w in PREDICTORS if any(k.startswith(f"{w}/") for k in agg)]
    names = {w: label for w, (_, label) in STYLE.items()} | {"trivial": "trivial ρ(t)=ρ(t0)"}
    width = max([20, *(len(names[w]) + 2 for w in cols)])  # every label stays apart from the next
    rows = [f"{'metric':<20}" + "".join(f"{names[w]:>{width}}" for w in cols)]
    for m in METRICS:
        if any(f"{w}/{m}" in agg for w in cols):
            cells = [agg.get(f"{w}/{m}") for w in cols]
            rows.append(f"{m:<20}" + "".join(f"{'' if v is None else f'{v:.4g}':>{width}}" for v in cells))
    return "\n".join(rows)
