"""The Python entry point of hybrid propagation, for notebooks and workflows (``rtml propagate`` calls it too).

    from pyscf import gto, dft
    from rtml.platform.hybrid.api import propagate
    mol = gto.M(atom="O 0 0 0.117; H 0 0.757 -0.469; H 0 -0.757 -0.469", basis="6-31g")
    mf = dft.RKS(mol, xc="LDA,VWN").run()
    res = propagate(["runs/small/model.pt"], mf, "kick:1e-3:z", n_steps=2000)
    res.trajectory.dipole   # [2000, 3] e·bohr;  res.triggers, res.reference_fraction, res.wall

The molecule may be a PySCF ``Mole`` or mean-field object (its basis set and functional are used, and a converged
mean-field object's density starts the engine's own SCF), an ASE ``Atoms``, an rtml ``Molecule``, a catalog name or
an ``.xyz`` path. Models are ``model.pt`` paths, run directories, MLflow URIs or loaded :class:`Surrogate` objects.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from rtml.datasets import observables as obs
from rtml.datasets.engine.propagator import IntegratorConfig
from rtml.datasets.engine.run import EngineConfig
from rtml.datasets.engine.system import SystemConfig
from rtml.datasets.fields import FieldSpec
from rtml.platform import tracking
from rtml.platform.hybrid.config import HybridConfig
from rtml.platform.hybrid.field_spec import parse_field
from rtml.platform.hybrid.inputs import _is_mean_field, molecule_from, system_overrides
from rtml.platform.hybrid.propagator import HybridResult, propagate_hybrid
from rtml.platform.modelio import load_model


def load_models(models) -> list:
    """Loaded surrogates from paths / run directories / MLflow URIs / :class:`Surrogate` objects (mixed allowed)."""

    out = []
    for spec in models if isinstance(models, (list, tuple)) else [models]:
        if isinstance(spec, (str, Path)):
            m = load_model(spec)
            m.rtml_meta = {**getattr(m, "rtml_meta", {}), "path": str(spec)}
        else:
            m = spec
        out.append(m)
    return out


def propagate(models, molecule, field: FieldSpec | str, n_steps: int, *, basis: str | None = None,
              xc: str | None = None, dt: float | None = None, hybrid: HybridConfig | None = None,
              progress: bool = False) -> HybridResult:
    """Hybrid RT-TDDFT of ``molecule`` under ``field`` for ``n_steps`` recorded frames (t = 0 included).

    ``basis`` / ``xc`` default to what a PySCF object carries, else :class:`SystemConfig`'s; ``dt`` (a.u.) to
    :class:`IntegratorConfig`'s; ``field`` is a :class:`FieldSpec` or the CLI's string form (``kick:1e-3:z``)."""
    mol = molecule_from(molecule)
    sys_kw = system_overrides(molecule)
    if basis is not None:
        sys_kw["basis"] = basis
    if xc is not None:
        sys_kw["xc"] = xc
    icfg = IntegratorConfig() if dt is None else replace(IntegratorConfig(), dt=float(dt))
    engine = EngineConfig(system=replace(SystemConfig(), **sys_kw), integrator=icfg, n_steps=int(n_steps))
    guess = None
    if _is_mean_field(molecule) and getattr(molecule, "converged", False):
        guess = np.asarray(molecule.make_rdm1())  # the user's converged density: the engine's SCF starts there
    spec = parse_field(field) if isinstance(field, str) else field
    return propagate_hybrid(load_models(models), mol, spec, engine, hybrid or HybridConfig(), progress=progress,
                            scf_guess=guess)


def plot_hybrid(res: HybridResult, out_dir: str | Path) -> list[Path]:
    """``dipole.png`` (μ along its most active axis; reference-engine frames marked, ensemble spread as a band)
    and, for a kicked run, ``spectrum.png`` (absorption from the hybrid dipole, < 20 eV)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    traj = res.trajectory
    t, mu = traj.time, traj.dipole  # [T] a.u., [T, 3] e·bohr
    ax_i = int(np.argmax(np.ptp(mu, axis=0)))
    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.plot(t, mu[:, ax_i], "C1-", lw=1.0, label="hybrid (surrogate)")
    ref = np.where(res.by_reference, mu[:, ax_i], np.nan)
    ax.plot(t, ref, "k.", ms=2, label="reference-engine frames")
    spread = np.nan_to_num(res.dipole_spread)
    if spread.any():
        ax.fill_between(t, mu[:, ax_i] - spread, mu[:, ax_i] + spread, color="C1", alpha=0.25,
                        label="ensemble spread (±std)")
    for trig in res.triggers:
        ax.axvline(t[min(trig["step"], len(t) - 1)], color="C3", lw=0.5, alpha=0.6)
    ax.set_title(f"{traj.molecule}: μ_{'xyz'[ax_i]}, {len(res.triggers)} re-anchors (red), reference fraction "
                 f"{res.reference_fraction:.3f}", fontsize=9)
    ax.set_xlabel("time (a.u.)")
    ax.set_ylabel("dipole (a.u.)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths = [out_dir / "dipole.png"]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)
    if traj.meta.get("field_spec", {}).get("kind") == "delta" and len(t) > 50:
        omega, s = obs.trajectory_spectrum(traj)
        ev = omega * obs.HARTREE_EV
        band = ev <= 20
        fig, ax = plt.subplots(figsize=(9, 3.0))
        ax.plot(ev[band], s[band], "C1-")
        ax.set_xlabel("energy (eV)")
        ax.set_ylabel("absorption (arb.)")
        ax.set_title(f"{traj.molecule}: absorption spectrum of the hybrid run", fontsize=9)
        fig.tight_layout()
        paths.append(out_dir / "spectrum.png")
        fig.savefig(paths[1], dpi=110)
        plt.close(fig)
    return paths


def log_hybrid_run(res: HybridResult, uri: str, experiment: str, run_name: str, artifacts: list[Path],
                   params: dict) -> str:
    """One MLflow run per propagation: settings, triggers (as a JSON artifact), reference fraction, wall split."""
    import json
    import tempfile

    run_id = tracking.start_run(uri, experiment, run_name, tags={"rtml.kind": "propagate"})
    tracking.log_params(uri, run_id, params)
    w = res.wall
    tracking.log_metrics(uri, run_id, {
        "reference_fraction": res.reference_fraction, "anchors": len(res.triggers),
        "wall_total_s": w.get("total"), "wall_model_s": w["model"], "wall_reference_s": w["reference"],
        "wall_setup_s": w["setup"], "ms_per_step": res.trajectory.meta["ms_per_step"],
        "max_dipole_spread": float(np.nanmax(res.dipole_spread)) if np.isfinite(res.dipole_spread).any() else None,
    }, step=0)
    c = tracking.client(uri)
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "triggers.json"
        p.write_text(json.dumps(res.triggers, indent=1))
        c.log_artifact(run_id, str(p))
    for a in artifacts:
        c.log_artifact(run_id, str(a), "plots")
    c.set_terminated(run_id)
    return run_id
