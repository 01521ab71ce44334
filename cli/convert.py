"""``rtml convert``: HDF5 trajectory files and NWChem outputs into a Zarr store."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rtml.cli.parsing import parse
from rtml.datasets.errors import DataError
from rtml.datasets.formats.hdf5 import read_hdf5
from rtml.datasets.formats.nwchem_trajectory import nwchem_trajectory
from rtml.datasets.store.zarr_store import TrajectoryStore


@dataclass(kw_only=True)
class ConvertConfig:
    out: str  # Zarr store (created or appended to)
    hdf5: list[str] = field(default_factory=list)  # trajectory files in the HDF5 schema
    nwchem_output: list[str] = field(default_factory=list)  # NWChem output file(s) of ONE rt_tddft run
    nwchem_restart: list[str] = field(default_factory=list)  # .rt_restart files of that run
    basis: str = "6-31g"  # basis of the NWChem run (PySCF name)
    xc: str = "LDA,VWN"  # functional of the NWChem run (recorded)
    molecule: str | None = None  # molecule name recorded for the NWChem run (None: from the output's atoms)
    charge: int | None = None  # charge (None: the output's 'System charge')
    precision: Literal["float32", "float64"] = "float32"  # density storage


HELP = "convert HDF5 / NWChem outputs into a Zarr store"


def main(argv: list[str]) -> int:
    return run(parse(ConvertConfig, argv, prog="rtml convert", description=__doc__))


def run(cfg: ConvertConfig) -> int:
    if not cfg.hdf5 and not cfg.nwchem_output:
        raise DataError("<command line>", "inputs", "--hdf5 files and/or --nwchem-output")
    with TrajectoryStore(cfg.out, mode="a", precision=cfg.precision) as store:
        n = _convert(cfg, store)
    print(f"converted {n} trajectories into {cfg.out} ({len(store)} in the store)")
    return 0


def _convert(cfg: ConvertConfig, store: TrajectoryStore) -> int:
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
    return n
