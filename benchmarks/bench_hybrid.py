"""The speed/accuracy table users decide by: one molecule, one kick, every way rtml can propagate it, one process.

Rows (same initial state, same kick, same span, same machine): the reference engine (PySCF Magnus-2, run fresh);
NWChem 7 where ``nwchem`` is on PATH (its ``grid xfine`` — the engine's PySCF grid level 3 is not the same grid:
accuracy is then NWChem's own against the engine, see ``rtml validate-reference`` for the matched comparison); the
frozen-xc and linear-xc physics baselines (no training); the surrogate's pure rollout at batch 1 and batched
(ms per trajectory; the batched rollout computes the same trajectory per member); and hybrid propagation with
re-anchoring (:func:`rtml.platform.hybrid.propagator.propagate_hybrid`, default :class:`HybridConfig`, the
ensemble given). Accuracy against the reference: dipole nRMSE, spectrum nRMSE and overlap (< 20 eV), the largest
peak shift (eV). Speed: ms per trajectory per step and the ratio to the reference engine (> 1: faster).

    python benchmarks/bench_hybrid.py --models runs/ens0 runs/ens1 runs/ens2 --molecule h2o --steps 2000 \
        [--xc LDA,VWN] [--batch 16] [--json out.json] [--reference ref.h5]

``--reference PATH.h5``: keep the reference trajectory — run the engine and write it there if the file does not
exist (``--reference-only``: then stop), else read it instead of running the engine again (its recorded ms/step,
measured in that run, is the reference speed; the file must be the run asked for: molecule, functional, basis, dt,
steps and kick are checked). For molecules whose reference takes longer than one sitting (C6H6: ~1 s a step).
The reference *speed* is then re-measured here, side by side with the other rows (``--time-reference`` steps of the
same engine run, default 40), so that load during the long run does not enter the ratios.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rtml.datasets import observables as obs
from rtml.datasets.engine.propagator import IntegratorConfig
from rtml.datasets.engine.run import EngineConfig, propagate
from rtml.datasets.engine.system import SystemConfig
from rtml.datasets.fields import kick
from rtml.datasets.formats.hdf5 import read_hdf5, write_hdf5
from rtml.datasets.formats.nwchem import parse_timeseries
from rtml.datasets.molecules import get_molecule
from rtml.datasets.validation import nwchem_input
from rtml.models.inputs import MoleculeBatch, spin_resolved
from rtml.models.rollout import rollout
from rtml.platform.evaluate import RolloutEvalConfig, evaluate_trajectory, max_peak_shift_ev
from rtml.platform.hybrid.api import load_models
from rtml.platform.hybrid.config import HybridConfig
from rtml.platform.hybrid.propagator import propagate_hybrid

CONTEXT = 2  # reference frames before the surrogate's first step (= HybridConfig.warmup_steps)


def accuracy(ref, mu: np.ndarray) -> dict:
    """Dipole and spectrum metrics of a dipole series [T, 3] against the reference trajectory (frames > CONTEXT)."""
    mu_ref = ref.dipole
    n = min(len(mu), len(mu_ref))
    mu, mu_ref = mu[:n], mu_ref[:n]
    out = {"dipole_nrmse": obs.dipole_nrmse(mu[CONTEXT + 1:], mu_ref[CONTEXT + 1:])}
    kappa, t_kick = obs.kick_of(ref)
    pol = ref.meta["field_spec"]["polarization"]
    om, s_ref = obs.absorption_spectrum(ref.time[:n], mu_ref, kappa, direction=pol, t_kick=t_kick, window="gauss")
    _, s = obs.absorption_spectrum(ref.time[:n], mu, kappa, direction=pol, t_kick=t_kick, window="gauss")
    out["spectrum_nrmse"] = obs.spectrum_nrmse(om, s, s_ref)
    out["spectrum_overlap"] = obs.spectrum_overlap(om, s, s_ref)
    out["max_peak_shift_ev"] = max_peak_shift_ev(om, s, s_ref)
    return out


def nwchem_row(mol, system: SystemConfig, dt: float, steps: int, amplitude: float, axis: str) -> dict | None:
    exe = shutil.which("nwchem")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        for d in ("perm", "scr"):
            (Path(tmp) / d).mkdir()
        (Path(tmp) / "in.nw").write_text(nwchem_input(mol, system.basis, system.xc, dt, (steps - 1) * dt,
                                                      amplitude, axis))
        t0 = time.perf_counter()
        out = subprocess.run([exe, "in.nw"], cwd=tmp, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
    series = parse_timeseries(out.stdout, "nwchem stdout")
    if "Dipole moment [system]" not in series:
        raise RuntimeError(f"NWChem failed (exit {out.returncode}): {out.stdout[-1500:]}{out.stderr[-1500:]}")
    _, mu = series["Dipole moment [system]"]
    return {"mu": mu, "ms_per_step": 1e3 * wall / max(len(mu) - 1, 1), "note": "NWChem grid xfine, SCF incl."}


def batched_ms(model, ref, batch: int) -> float:
    """ms per trajectory per step of a pure rollout of ``batch`` copies (after a warm-up)."""
    mol = MoleculeBatch.from_trajectories([ref] * batch, dtype=torch.float32, kohn_sham=True)  # terms once
    rho = spin_resolved(torch.from_numpy(ref.density[CONTEXT]))[None].repeat(batch, 1, 1, 1)
    field = torch.from_numpy(ref.field[CONTEXT:])[None].repeat(batch, 1, 1).float()
    n = min(200, ref.n_steps - 1 - CONTEXT)
    with torch.no_grad():
        rollout(model, mol, rho, field, 4, ref.dt, store_every=0)
        t0 = time.perf_counter()
        rollout(model, mol, rho, field, n, ref.dt, store_every=0)
    return 1e3 * (time.perf_counter() - t0) / (n * batch)


def _check_reference(ref, path, mol, system: SystemConfig, dt: float, steps: int, field) -> None:
    """Refuse a reference file that is not the run asked for (errors name the file and the field)."""
    want = {"molecule": mol.name, "functional": system.xc, "basis": system.basis.lower(), "dt": dt,
            "n_steps": steps, "field_spec": json.loads(json.dumps(field.to_dict()))}
    got = {"molecule": ref.molecule, "functional": ref.functional, "basis": ref.basis_name.lower(), "dt": ref.dt,
           "n_steps": ref.n_steps, "field_spec": json.loads(json.dumps(ref.meta.get("field_spec")))}
    for key, value in want.items():
        if got[key] != value:
            raise SystemExit(f"{path}: {key} is {got[key]!r}, this benchmark asks for {value!r}")


AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}


def run(models: list[str], molecule: str, steps: int, xc: str, basis: str, dt: float, amplitude: float,
        batch: list[int], hybrid: HybridConfig, axis: str = "z", nwchem: bool = True,
        reference: str | None = None, reference_only: bool = False, nwchem_steps: int | None = None,
        time_reference: int = 40) -> list[dict]:
    mol = get_molecule(molecule)
    system = SystemConfig(basis=basis, xc=xc)
    engine = EngineConfig(system=system, integrator=IntegratorConfig(dt=dt), n_steps=steps)
    field = kick(amplitude, AXES[axis])
    if reference is None or not Path(reference).exists():
        t0 = time.perf_counter()
        ref = propagate(mol, field, engine, progress=True)
        ref_wall = time.perf_counter() - t0
        ref.meta["bench_wall_s"] = ref_wall
        if reference is not None:
            write_hdf5(ref, reference)
            print(f"reference written to {reference}")
            if reference_only:
                return []
    else:
        ref = read_hdf5(reference)
        _check_reference(ref, reference, mol, system, dt, steps, field)
        ref_wall = float(ref.meta.get("bench_wall_s", ref.meta["ms_per_step"] * steps / 1e3))
        if time_reference:
            timed = propagate(mol, field, EngineConfig(system=system, integrator=IntegratorConfig(dt=dt),
                                                       n_steps=time_reference + 1))
            print(f"reference file: {ref.meta['ms_per_step']:.1f} ms/step; timed now over {time_reference} steps: "
                  f"{timed.meta['ms_per_step']:.1f}", flush=True)
            ref.meta["ms_per_step"] = timed.meta["ms_per_step"]
    ref_ms = ref.meta["ms_per_step"]
    rows = [{"row": "reference engine (PySCF Magnus-2)", "ms_per_step": ref_ms, "wall_s": ref_wall,
             "dipole_nrmse": 0.0, "spectrum_nrmse": 0.0, "spectrum_overlap": 1.0, "max_peak_shift_ev": 0.0}]
    print(f"reference: {ref_ms:.1f} ms/step ({steps} steps, wall {ref_wall:.0f} s)", flush=True)
    nw_steps = min(steps, nwchem_steps or steps)
    nw = nwchem_row(mol, system, dt, nw_steps, amplitude, axis) if nwchem else None
    if nw is not None:
        span = "" if nw_steps == steps else f", first {nw_steps} steps only"
        rows.append({"row": f"NWChem 7.0.2 rt_tddft (grid xfine{span})", "ms_per_step": nw["ms_per_step"],
                     **accuracy(ref, ref.dipole[0] + (nw["mu"] - nw["mu"][0]))})
        print(f"nwchem: {nw['ms_per_step']:.1f} ms/step", flush=True)
    loaded = load_models(models) if models else []
    ev = evaluate_trajectory(loaded[0] if loaded else None, ref, RolloutEvalConfig(context=CONTEXT))
    for who, label in (("frozen_xc", "frozen-xc baseline"), ("linear_xc", "linear-xc baseline"),
                       ("model", "surrogate, pure rollout, batch 1")):
        if who in ev:
            rows.append({"row": label, "ms_per_step": ev[who]["ms_per_step"], **accuracy(ref, ev["mu"][who])})
    if loaded:
        one = rows[-1]
        for b in batch:
            rows.append({"row": f"surrogate, pure rollout, batch {b} (per trajectory)",
                         "ms_per_step": batched_ms(loaded[0], ref, b),
                         **{k: v for k, v in one.items() if k not in ("row", "ms_per_step")}})
        res = propagate_hybrid(loaded, mol, field, engine, hybrid, progress=True)
        w = res.wall
        rows.append({"row": f"hybrid, {len(loaded)}-model ensemble + re-anchoring",
                     "ms_per_step": 1e3 * (w["model"] + w["reference"]) / (steps - 1),
                     "reference_fraction": res.reference_fraction, "anchors": len(res.triggers),
                     "triggers": sorted({t["reason"] for t in res.triggers}),
                     **accuracy(ref, res.trajectory.dipole)})
    for r in rows:
        r["speedup_vs_reference"] = ref_ms / r["ms_per_step"]
        r.update(molecule=molecule, basis=basis, xc=xc, steps=steps, span_au=(steps - 1) * dt)
    return rows


def table(rows: list[dict]) -> str:
    head = ("| row | ms/step | × reference | dipole nRMSE | spectrum nRMSE | overlap | max peak shift (eV) |\n"
            "|---|---:|---:|---:|---:|---:|---:|")
    def fmt(v, f):
        return "–" if v is None else format(v, ".1e" if 0 < abs(v) < 10 ** -int(f[1]) else f)

    lines = [head]
    for r in rows:
        extra = (f" (ref. fraction {r['reference_fraction']:.2f}, {r['anchors']} anchors: "
                 f"{', '.join(r['triggers']) or 'none'})" if "reference_fraction" in r else "")
        lines.append(f"| {r['row']}{extra} | {r['ms_per_step']:.2f} | {r['speedup_vs_reference']:.1f} | "
                     f"{fmt(r['dipole_nrmse'], '.4f')} | {fmt(r['spectrum_nrmse'], '.4f')} | "
                     f"{fmt(r['spectrum_overlap'], '.3f')} | {fmt(r['max_peak_shift_ev'], '.3f')} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=[], help="model.pt / run directories (first = primary)")
    p.add_argument("--molecule", default="h2o")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--xc", default=SystemConfig.xc)
    p.add_argument("--basis", default=SystemConfig.basis)
    p.add_argument("--dt", type=float, default=IntegratorConfig.dt)
    p.add_argument("--amplitude", type=float, default=1e-3, help="kick (a.u.)")
    p.add_argument("--axis", choices=sorted(AXES), default="z", help="kick polarization")
    p.add_argument("--batch", type=int, nargs="+", default=[16], help="batch sizes of the batched rows")
    p.add_argument("--no-nwchem", action="store_true", help="skip the NWChem row")
    p.add_argument("--nwchem-steps", type=int, default=None,
                   help="run NWChem for this many steps only (speed; accuracy over those steps)")
    p.add_argument("--json", default=None)
    p.add_argument("--reference", default=None, help="reference trajectory (HDF5): read if it exists, else written")
    p.add_argument("--reference-only", action="store_true", help="write --reference and stop")
    p.add_argument("--time-reference", type=int, default=40,
                   help="with a --reference file: engine steps timed here for the speed ratios (0: the file's)")
    a = p.parse_args(argv)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    rows = run(a.models, a.molecule, a.steps, a.xc, a.basis, a.dt, a.amplitude, a.batch, HybridConfig(), a.axis,
               not a.no_nwchem, a.reference, a.reference_only, a.nwchem_steps, a.time_reference)
    if not rows:
        return 0
    print(f"\n{a.molecule}/{a.basis} {a.xc}, kick {a.amplitude} a.u. along {a.axis}, {a.steps} steps "
          f"({(a.steps - 1) * a.dt:.0f} a.u.)\n")
    print(table(rows))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
