"""``rtml convert``: HDF5 trajectory files and NWChem outputs into a Zarr store."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rtml.datasets.errors import DataError
from rtml.datasets.formats.hdf5 import read_hdf5
from rtml.datasets.formats.nwchem_trajectory import nwchem_trajectory
from rtml.datasets.store.zarr_store import TrajectoryStore


@dataclass(kw_only=True)
class ConvertConfig:
    out: str
    hdf5: list[str] = field(default_factory=list)
    nwchem_output: list[str] = field(default_factory=list)
    nwchem_restart: list[str] = field(default_factory=list)
    basis: str = "6-31g"
    xc: str = "LDA,VWN"
    molecule: str | None = None
    charge: int | None = None
    precision: str = "float32"


def add_parser(sub) -> None:
    p = sub.add_parser("convert", help="convert HDF5 / NWChem outputs into a Zarr store")
    p.add_argument("--out", required=True, help="Zarr store (created or appended to)")
    p.add_argument("--hdf5", nargs="*", default=[], help="trajectory files in the HDF5 schema")
    p.add_argument("--nwchem-output", nargs="*", default=[], help="NWChem output file(s) of ONE rt_tddft run")
    p.add_argument("--nwchem-restart", nargs="*", default=[], help=".rt_restart files of that run")
    p.add_argument("--basis", default="6-31g", help="basis of the NWChem run (PySCF name)")
    p.add_argument("--xc", default="LDA,VWN", help="functional of the NWChem run (recorded)")
    p.add_argument("--molecule", default=None)
    p.add_argument("--charge", type=int, default=None, help="charge (default: the output's 'System charge')")
    p.add_argument("--precision", default="float32", choices=["float32", "float64"])
    p.set_defaults(func=lambda a: run(ConvertConfig(
        out=a.out, hdf5=a.hdf5, nwchem_output=a.nwchem_output, nwchem_restart=a.nwchem_restart, basis=a.basis,
        xc=a.xc, molecule=a.molecule, charge=a.charge, precision=a.precision)))


def run(cfg: ConvertConfig) -> int:
    if not cfg.hdf5 and not cfg.nwchem_output:
        raise DataError("<command line>", "inputs", "--hdf5 files and/or --nwchem-output")
    store = TrajectoryStore(cfg.out, mode="a", precision=cfg.precision)
    n = 0
    for path in cfg.hdf5:
        traj = read_hdf5(path)
        store.append(traj, Path(path).stem, source=str(path))
        n += 1
    if cfg.nwchem_output:
        traj = nwchem_trajectory(cfg.nwchem_output, cfg.nwchem_restart, cfg.basis, cfg.xc, molecule=cfg.molecule,
                                 charge=cfg.charge)
        store.append(traj, Path(cfg.nwchem_output[0]).stem, source="nwchem")
        n += 1
    print(f"converted {n} trajectories into {cfg.out} ({len(store)} in the store)")
    return 0
