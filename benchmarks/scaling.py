"""How the surrogate's set-up and step cost grow with the molecule, next to the reference engine's (issue 27).

For each molecule (LDA,VWN/6-31G, catalog geometry; one fresh process each, so peak memory is its own):

* reference engine: SCF time and ms per Magnus-2 step (self-consistent midpoint, V_xc not recorded — its best
  setting here), from a short kicked run;
* per-geometry set-up of the exact terms: the Coulomb Cholesky factor (Q vectors; column by column, no [N², N²]
  array), the xc kernel (factored, ISDF; and the dense one where it fits, for comparison), V_xc(ρ0): seconds and
  MB, and the peak of the numpy memory while building them (tracemalloc) and of the process (ru_maxrss);
* ms per trajectory-step of the surrogate (the given model, or the untrained ``small`` preset: cost does not depend
  on the weights) and of linear xc, at batch 1 and batched (several fields on one geometry);
* the speed-up of the model's step over the reference engine's.

One JSON, one Markdown table and a log–log plot with the fitted exponents (least squares of log cost on log N)::

    python benchmarks/scaling.py --molecules h2o c6h6 naphthalene tetracene --out runs/scaling
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

DT = 0.2
MB = 2.0 ** 20


def _ms_per_step(model, mol, rho0, min_seconds: float = 2.0) -> float:
    from rtml.models.rollout import rollout

    def run(n):
        field = torch.zeros(rho0.shape[0], n + 1, 3, dtype=torch.float64)
        field[:, 0, 0] = 1e-3
        t0 = time.perf_counter()
        with torch.no_grad():
            rollout(model, mol, rho0, field, n, DT, store_every=0)
        return time.perf_counter() - t0

    run(2)  # warm-up (and the per-geometry operators)
    n = 4
    while True:
        elapsed = run(n) - run(0)
        if elapsed > min_seconds or n >= 256:
            return 1e3 * elapsed / (n * rho0.shape[0])
        n *= 4


def measure(name: str, model_spec: str | None, batches: list[int], ref_steps: int, dense_max: int,
            threads: int) -> dict:
    """Everything for one molecule (run in its own process)."""
    torch.set_num_threads(threads)
    from pyscf import lib

    lib.num_threads(threads)
    from rtml.datasets.engine.run import EngineConfig, propagate
    from rtml.datasets.fields import kick
    from rtml.datasets.kohn_sham import KohnShamTerms, j_factor, static_of, system_from_static, xc_potential
    from rtml.datasets.molecules import get_molecule
    from rtml.datasets.xc_kernel import xc_kernel
    from rtml.models.baselines import LinearXC
    from rtml.models.inputs import MoleculeBatch, spin_resolved
    from rtml.models.surrogate import Surrogate, preset
    from rtml.platform.modelio import load_model

    row: dict = {"molecule": name}
    traj = propagate(get_molecule(name), kick(1e-3, (1, 1, 1)), EngineConfig(n_steps=ref_steps, record_xc=False))
    row.update(nbf=traj.nbf, atoms=len(traj.atomic_numbers), scf_s=traj.meta["scf_seconds"],
               reference_ms=traj.meta["ms_per_step"], rss_engine_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(f"{name}: N = {traj.nbf}; SCF {row['scf_s']:.1f} s, reference {row['reference_ms']:.0f} ms/step", flush=True)

    static = static_of(traj)
    sysm = system_from_static(static)
    rho0 = np.asarray(traj.density[0])
    tracemalloc.start()
    t0 = time.perf_counter()
    fac = j_factor(sysm)
    t1 = time.perf_counter()
    kern = xc_kernel(sysm, rho0, "isdf")
    t2 = time.perf_counter()
    vxc0 = xc_potential(sysm, rho0)
    t3 = time.perf_counter()
    row["setup_peak_numpy_mb"] = tracemalloc.get_traced_memory()[1] / MB
    tracemalloc.stop()
    row.update(j_s=t1 - t0, j_vectors=len(fac), j_mb=fac.nbytes / MB, kernel_s=t2 - t1, kernel_points=len(kern.points),
               kernel_mb=kern.nbytes / MB, vxc0_s=t3 - t2, setup_s=row["scf_s"] + t3 - t0)
    print(f"  set-up: J factor {row['j_s']:.1f} s ({len(fac)} vectors, {row['j_mb']:.0f} MB); ISDF kernel "
          f"{row['kernel_s']:.1f} s ({row['kernel_points']} points, {row['kernel_mb']:.1f} MB); V_xc(ρ0) "
          f"{row['vxc0_s']:.1f} s; numpy peak {row['setup_peak_numpy_mb']:.0f} MB", flush=True)
    if traj.nbf <= dense_max:
        t = time.perf_counter()
        dense = xc_kernel(sysm, rho0, "dense")
        row.update(dense_kernel_s=time.perf_counter() - t, dense_kernel_mb=dense.nbytes / MB)
        del dense
    terms = KohnShamTerms(overlap=sysm.overlap, hcore=sysm.hcore, r_ints=sysm.r_ints, j_factor=fac, vxc0=vxc0,
                          rho0=rho0.astype(np.complex128), xc_kernel=kern)
    model = load_model(model_spec) if model_spec else Surrogate(preset("small", xc_anchor="linear"))
    model.eval()
    for label, m in (("model", model), ("linear_xc", LinearXC())):
        for b in batches:
            mol = MoleculeBatch.from_trajectories([traj] * b, dtype=torch.float32, ks_terms=[terms] * b)
            r0 = spin_resolved(torch.from_numpy(rho0)).repeat(b, 1, 1, 1)
            ms = _ms_per_step(m, mol, r0)
            row[f"{label}_ms_b{b}"] = ms
            print(f"  {label:9s} batch {b}: {ms:8.2f} ms per trajectory-step ({row['reference_ms'] / ms:6.1f}× "
                  "below the reference)", flush=True)
    row["rss_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row["speedup_b1"] = row["reference_ms"] / row[f"model_ms_b{batches[0]}"]
    return row


def _exponent(ns, ys) -> float:
    ok = [(n, y) for n, y in zip(ns, ys) if y and y > 0]
    if len(ok) < 2:
        return float("nan")
    x, y = np.log([o[0] for o in ok]), np.log([o[1] for o in ok])
    return float(np.polyfit(x, y, 1)[0])


COLUMNS = [("reference_ms", "reference ms/step"), ("model_ms_b1", "model ms/step b1"),
           ("linear_xc_ms_b1", "linear xc ms/step b1"), ("setup_s", "set-up s (SCF + terms)"),
           ("j_mb", "J factor MB"), ("kernel_mb", "kernel MB (ISDF)"), ("setup_peak_numpy_mb", "terms peak MB"),
           ("rss_peak_mb", "process peak MB")]


def report(rows: list[dict], batches: list[int], out: Path) -> str:
    ns = [r["nbf"] for r in rows]
    lines = ["| molecule | N | atoms | reference ms/step | model ms/step (b1 / b" + str(batches[-1]) + ") | speed-up b1 "
             "| linear xc ms/step b1 | SCF s | J s (Q) | ISDF kernel s (P) | dense kernel s | J + kernel MB | "
             "terms peak MB | process peak MB |", "|" + "---|" * 14]
    for r in rows:
        dense = f"{r['dense_kernel_s']:.1f}" if "dense_kernel_s" in r else "—"
        lines.append(
            f"| {r['molecule']} | {r['nbf']} | {r['atoms']} | {r['reference_ms']:.0f} | {r['model_ms_b1']:.1f} / "
            f"{r[f'model_ms_b{batches[-1]}']:.2f} | {r['speedup_b1']:.0f}× | {r['linear_xc_ms_b1']:.2f} | "
            f"{r['scf_s']:.1f} | {r['j_s']:.1f} ({r['j_vectors']}) | {r['kernel_s']:.1f} ({r['kernel_points']}) | "
            f"{dense} | {r['j_mb'] + r['kernel_mb']:.0f} | {r['setup_peak_numpy_mb']:.0f} | {r['rss_peak_mb']:.0f} |")
    fits = {key: _exponent(ns, [r.get(key) for r in rows]) for key, _ in COLUMNS}
    fits["terms_mb"] = _exponent(ns, [r["j_mb"] + r["kernel_mb"] for r in rows])
    fits["terms_s"] = _exponent(ns, [r["j_s"] + r["kernel_s"] + r["vxc0_s"] for r in rows])
    lines.append("")
    lines.append("Fitted exponents (cost ∝ N^k over the molecules): " + ", ".join(
        f"{label} {fits[key]:.2f}" for key, label in COLUMNS) + f", J + kernel MB {fits['terms_mb']:.2f}, "
        f"terms set-up s {fits['terms_s']:.2f}")
    text = "\n".join(lines)
    (out / "scaling.md").write_text(text + "\n")
    (out / "scaling.json").write_text(json.dumps({"rows": rows, "exponents": fits}, indent=1))
    _plot(rows, fits, out / "scaling.png")
    return text


def _plot(rows, fits, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = np.array([r["nbf"] for r in rows])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, label in (("reference_ms", "reference engine"), ("model_ms_b1", "model, batch 1"),
                       ("linear_xc_ms_b1", "linear xc, batch 1")):
        axes[0].loglog(ns, [r[key] for r in rows], "o-", label=f"{label} (N^{fits[key]:.2f})")
    axes[0].set(xlabel="basis functions N", ylabel="ms per step", title="step cost")
    for key, label in (("setup_s", "set-up s (SCF + exact terms)"), ("setup_peak_numpy_mb", "exact terms peak MB"),
                       ("rss_peak_mb", "process peak MB")):
        axes[1].loglog(ns, [r[key] for r in rows], "o-", label=f"{label} (N^{fits[key]:.2f})")
    axes[1].set(xlabel="basis functions N", title="per-geometry set-up")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--molecules", nargs="+", default=["h2o", "c6h6", "naphthalene", "tetracene"])
    ap.add_argument("--model", default=None, help="model file (default: the untrained small preset, linear anchor)")
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    ap.add_argument("--ref-steps", type=int, default=6, help="reference engine steps timed per molecule")
    ap.add_argument("--dense-max", type=int, default=70, help="also build the dense kernel up to this N")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/scaling")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    ctx = mp.get_context("spawn")
    for name in a.molecules:
        with ctx.Pool(1) as pool:  # a fresh process per molecule: its own peak memory
            rows.append(pool.apply(measure, (name, a.model, a.batches, a.ref_steps, a.dense_max, a.threads)))
        (out / "scaling.json").write_text(json.dumps({"rows": rows}, indent=1))  # nothing lost if a later one fails
    print(report(rows, a.batches, out))


if __name__ == "__main__":
    main()
