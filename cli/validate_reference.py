"""``rtml validate-reference``: the engine against linear-response TDDFT, conservation laws and NWChem."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtml.cli.parsing import parse
from rtml.datasets.observables import HARTREE_EV, trajectory_spectrum
from rtml.datasets.validation import conservation_check, nwchem_check, peak_check


@dataclass(kw_only=True)
class ValidateConfig:
    out: str = "runs/validate-reference"  # folder for report.json and the spectra
    molecules: list[str] = field(default_factory=lambda: ["h2", "lih", "h2o"])  # catalog names
    xc: list[str] = field(default_factory=lambda: ["LDA,VWN"])  # functionals (PySCF strings), e.g. --xc LDA,VWN B3LYP
    basis: str = "6-31g"  # Gaussian basis set (PySCF name)
    t_total: float = 1000.0  # length of the kicked runs for spectra, a.u.
    steps: int = 2000  # steps of the conservation runs
    nwchem_steps: int = 300  # steps compared with NWChem (0: skip)
    tolerance_ev: float = 0.01  # largest accepted |E_RT - E_LR| of a bright peak, eV (exit status 1 beyond)


HELP = "check the reference engine against independent references"


def main(argv: list[str]) -> int:
    return run(parse(ValidateConfig, argv, prog="rtml validate-reference", description=__doc__))


def _plot_spectrum(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w, s = trajectory_spectrum(res["trajectory"], window="gauss", emax_ev=25.0, n_omega=8000)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(w * HARTREE_EV, s, lw=1, label="real-time (rtml engine)")
    for i, r in enumerate(res["peaks"]):
        ax.axvline(r["lr_ev"], color="C1", ls="--", lw=0.8, label="LR-TDDFT (PySCF tdscf)" if i == 0 else None)
    ax.set(xlabel="energy (eV)", ylabel="dipole strength (1/Ha)",
           title=f"{res['molecule']} / {res['basis']} / {res['xc']}, T = {res['t_total']:.0f} a.u.")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(cfg: ValidateConfig) -> int:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    report, ok = {"peaks": [], "conservation": [], "nwchem": []}, True
    for xc in cfg.xc:
        for mol in cfg.molecules:
            res = peak_check(mol, cfg.basis, xc, t_total=cfg.t_total, progress=True)
            _plot_spectrum(res, out / f"spectrum_{mol}_{xc.replace(',', '-')}.png")
            res.pop("trajectory")
            report["peaks"].append(res)
            err = res["max_error_ev"]
            ok &= err is not None and err <= cfg.tolerance_ev
            print(f"peaks  {mol:5s} {xc:8s} max |E_RT - E_LR| = {err:.4f} eV over "
                  f"{sum(r['resolved'] for r in res['peaks'])} bright states ({res['ms_per_step']:.1f} ms/step)")
            c = conservation_check(mol, cfg.basis, xc, steps=cfg.steps)
            report["conservation"].append(c)
            print(f"drift  {mol:5s} {xc:8s} {cfg.steps} steps: trace {c['trace_drift']:.1e}, Hermiticity "
                  f"{c['hermiticity']:.1e}, idempotency {c['idempotency']:.1e}, energy {c['energy_drift_ha']:.1e} Ha")
    if cfg.nwchem_steps and shutil.which("nwchem"):
        for xc in cfg.xc:
            r = nwchem_check("h2o", cfg.basis, xc, steps=cfg.nwchem_steps)
            report["nwchem"].append({k: v for k, v in r.items() if not isinstance(v, np.ndarray)})
            print(f"nwchem h2o   {xc:8s} {r['steps']} steps: max |mu_rtml - mu_nwchem| = {r['max_abs_diff']:.2e} au "
                  f"({r['max_rel_diff']:.1e} of the induced dipole)")
    elif cfg.nwchem_steps:
        print("nwchem: not installed, comparison skipped (apt-get install nwchem)")
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(f"report: {out / 'report.json'}; spectra: {out}/spectrum_*.png")
    return 0 if ok else 1
