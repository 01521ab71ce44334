"""``rtml generate``: RT-TDDFT trajectories with the reference engine into a Zarr store (one Ray task each)."""

from __future__ import annotations

import json

from rtml.datasets.generate import GenerateConfig, generate
from rtml.datasets.molecules import CATALOG


def add_parser(sub) -> None:
    p = sub.add_parser("generate", help="generate trajectories with the PySCF reference engine (Ray, resumable)")
    p.add_argument("--out", required=True, help="Zarr store path (created or appended to)")
    p.add_argument("--molecules", default="h2,lih", help=f"comma list of {sorted(CATALOG)} or .xyz paths")
    p.add_argument("--fields", default="kick,pulse", help="comma list of field families: kick, pulse, strong (pulse beyond linear response), sine")
    p.add_argument("--n-geometries", type=int, default=2, help="geometries per molecule, >= 1 (geometry 0 is the catalog geometry; 1 = only that one)")
    p.add_argument("--n-fields", type=int, default=1, help="random fields per family and geometry")
    p.add_argument("--steps", type=int, default=200, help="recorded states per trajectory (incl. t=0)")
    p.add_argument("--dt", type=float, default=0.2, help="time step, a.u.")
    p.add_argument("--basis", default="6-31g")
    p.add_argument("--xc", default="LDA,VWN", help="PySCF functional string or HF")
    p.add_argument("--integrator", default="magnus2", choices=["magnus2", "mmut"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", default="float32", choices=["float32", "float64"], help="density storage")
    p.add_argument("--executor", default="ray", choices=["ray", "serial"])
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs for a local Ray (default: all)")
    p.set_defaults(func=lambda a: run(GenerateConfig(
        out=a.out, molecules=a.molecules.split(","), fields=a.fields.split(","), n_geometries=a.n_geometries,
        n_fields=a.n_fields, steps=a.steps, dt=a.dt, basis=a.basis, xc=a.xc, integrator=a.integrator, seed=a.seed,
        precision=a.precision, executor=a.executor, address=a.address, num_cpus=a.num_cpus)))


def run(cfg: GenerateConfig) -> int:
    report = generate(cfg)
    print(json.dumps(report, indent=2))
    return 1 if report["failed"] else 0
