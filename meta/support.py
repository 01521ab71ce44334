"""Support / query trajectories of one molecule for ``rtml adapt``: from Zarr stores, HDF5 files (seed schema), or
generated on the spot with the reference engine. Everything ends up in one Zarr store so windows are drawn the same
way as in (meta-)training. NWChem runs are imported with ``rtml convert`` first (they only hold densities at restart
times), then passed as a store."""

from __future__ import annotations

import math
from pathlib import Path

from rtml.datasets.errors import DataError
from rtml.datasets.formats.hdf5 import read_hdf5
from rtml.datasets.generate import GenerateConfig, generate
from rtml.datasets.molecules import get_molecule
from rtml.datasets.store.zarr_store import TrajectoryStore


def molecule_name(name_or_xyz: str) -> str:
    """The name trajectories of this molecule carry in a store (catalog name, or the .xyz file's stem)."""
    return get_molecule(name_or_xyz).name


def collect(sources: list[str], out: str | Path, molecule: str) -> tuple[str, list[str]]:
    """(store path, ids of ``molecule``) from Zarr stores and/or .h5/.hdf5 files. A single Zarr store is used in
    place; anything else is copied into ``out`` (a new Zarr store)."""
    if not sources:
        raise DataError("<command line>", "--support", "a Zarr store or HDF5 files (or --generate K)")
    for s in sources:
        if not Path(s).exists():
            raise DataError(s, "--support", "an existing Zarr store (.zarr) or HDF5 file (.h5/.hdf5)", "no such path")
    if len(sources) == 1 and _is_zarr(sources[0]):
        path = sources[0]
    else:
        path = str(out)
        with TrajectoryStore(path, mode="a") as store:
            for s in sources:
                if _is_zarr(s):
                    src = TrajectoryStore(s)
                    for i in src.ids():
                        if i not in store:
                            store.append(src.read(i), i, source=s)
                elif s.endswith((".h5", ".hdf5")):
                    stem = Path(s).stem
                    if stem not in store:
                        store.append(read_hdf5(s), stem, source=s)
                else:
                    raise DataError(s, "--support", "a Zarr store (.zarr) or an HDF5 file (.h5/.hdf5); NWChem runs: "
                                                    "`rtml convert --nwchem-output ...` first")
    return path, of_molecule(path, molecule)


def _is_zarr(path: str) -> bool:
    return Path(path).is_dir() and (Path(path) / "zarr.json").exists()


def of_molecule(store_path: str, molecule: str) -> list[str]:
    store = TrajectoryStore(store_path)
    ids = sorted(e["id"] for e in store.index if e["molecule"] == molecule)
    if not ids:
        present = sorted({e["molecule"] for e in store.index})
        raise DataError(store_path, "molecule", f"trajectories of '{molecule}'", f"only {present}")
    return ids


def check_basis(store_path: str, ids: list[str], basis: str) -> None:
    """Every trajectory must be in the declared basis (names compared case- and dash-insensitively)."""
    norm = lambda b: str(b).lower().replace("-", "").replace("_", "")
    store = TrajectoryStore(store_path)
    for i in ids:
        got = store.entry(i)["basis"]
        if norm(got) != norm(basis):
            raise DataError(f"{store_path}/trajectories/{i}", "basis", f"'{basis}' (declared with --basis)", got)


def generate_support(molecule: str, n: int, out: str | Path, basis: str, steps: int, seed: int) -> tuple[str, list]:
    """``n`` trajectories of ``molecule`` (kicks and pulses on sampled geometries) with the PySCF engine on
    local Ray; resumable like ``rtml generate``."""

    cfg = GenerateConfig(out=str(out), molecules=[molecule], fields=["kick", "pulse"],
                         n_geometries=math.ceil(n / 2), steps=steps, basis=basis, seed=seed)
    rep = generate(cfg)
    if rep["failed"]:
        raise DataError(str(out), "generated trajectories", "all succeeded", str(rep["failed"]))
    return str(out), of_molecule(str(out), molecule_name(molecule))[:n]
