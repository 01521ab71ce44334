"""A Zarr v3 store of many trajectories (different molecules, different nbf).

Layout (``STORE`` is a directory or any URL zarr can open)::

    STORE/                        root group; attrs["rtml_store"] = {schema_version, density_dtype, created}
    STORE/index/entries           one JSON entry per committed trajectory (append-only; :mod:`.index`)
    STORE/trajectories/<id>/      one group per trajectory; attrs: molecule, charge, multiplicity, n_electrons,
                                  basis, functional, dt, meta (JSON)
        density   [T, n_spin, nbf, nbf] complex64|complex128, chunks of `chunk_steps` steps inside shards of
                  `shard_steps` steps (sharding codec), Zstd-compressed; read as windows through
                  :meth:`TrajectoryStore.read_windows` (whole chunks, concurrent, decoded-chunk LRU)
        xc_potential [T, n_spin, nbf, nbf] float32|complex64, same chunking (schema 2, optional): the Fock
                  supervision target V_xc(t) = F(t) - h - J[P(t)] - E(t).r
        field [T, 3], time [T], energy [T], dipole [T, 3]       float64
        positions [n_atoms, 3] (Å), atomic_numbers [n_atoms]    float64 / int32
        overlap, core_hamiltonian [nbf, nbf]                    float64
        basis_atom_index, basis_l, basis_m, basis_shell [nbf]   int32

The index entry of a trajectory is written *last*: a trajectory whose writer died half-way is not in the index,
readers never see it, and the next append with that id replaces it. Its checksums (density, dipole, V_xc) are
verified by every whole-trajectory read. One writer at a time (:mod:`.writer_lock`: ``flock`` on local stores, a
lease on object stores, a clear :class:`StoreBusyError` for a second writer); any number of readers. Paths or any
fsspec URL (``s3://bucket/train.zarr``, ``memory://…``).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import zarr

from rtml.datasets.basis import BasisInfo
from rtml.datasets.errors import DataError
from rtml.datasets.store.index import StoreIndex
from rtml.datasets.store.window_reads import DEFAULT_CACHE_BYTES, WindowReads
from rtml.datasets.store.writer_lock import StoreBusyError, is_remote, writer_lock
from rtml.datasets.trajectory import Tolerances, Trajectory

__all__ = ["SCHEMA_VERSION", "StoreBusyError", "TrajectoryStore"]

SCHEMA_VERSION = 3  # 3: index in index/entries (was a root-attribute list); 2: optional xc_potential; 1, 2 read
READABLE_SCHEMAS = (1, 2, 3)
DTYPES = {"float32": "complex64", "float64": "complex128"}
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,199}")  # one path segment: no '/', no leading '.'


@contextmanager
def _nothing():
    yield


def check_id(path: str, traj_id) -> str:
    """``traj_id`` if it is a safe trajectory id (it names a group under ``trajectories/``: an id with ``/`` or
    ``..`` would write into another trajectory's arrays), else a :class:`DataError`."""
    if not isinstance(traj_id, str) or not ID_PATTERN.fullmatch(traj_id):
        raise DataError(path, "trajectory id", "1-200 characters from A-Z a-z 0-9 . _ + = -, starting with a letter "
                        "or digit", repr(traj_id))
    return traj_id


def _digest(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


class TrajectoryStore:
    """Open (``mode='r'``/``'a'``) or create (``mode='w'``, ``'a'`` on a missing path) a trajectory store.

    ``chunk_steps``/``shard_steps``: time chunking of new density arrays (64-step chunks: a training window spans
    one or two; see ``benchmarks/bench_store.py``); ``cache_bytes``: decoded chunks kept for window reads. A store
    opened for writing is also a context manager (``close()`` releases an object store's writer lease)."""

    def __init__(self, path: str | Path, mode: str = "r", precision: str = "float32", chunk_steps: int = 64,
                 shard_steps: int = 1024, cache_bytes: int = DEFAULT_CACHE_BYTES):
        self.path, self.mode = str(path), mode
        self.chunk_steps, self.shard_steps, self.cache_bytes = chunk_steps, shard_steps, cache_bytes
        is_local = not is_remote(self.path)
        if mode == "r" and is_local and not Path(self.path).exists():
            raise DataError(self.path, "store", "an existing Zarr trajectory store (run `rtml generate` or "
                                                "`rtml convert` first)")
        if precision not in DTYPES:
            raise DataError(self.path, "precision", f"one of {sorted(DTYPES)}", repr(precision))
        # a writer takes the lock (lease) *before* touching the store: mode 'w' must not wipe another writer's store
        self._writer = writer_lock(self.path) if mode != "r" else None
        try:
            with self._writer.held() if self._writer is not None else _nothing():
                self._open(mode, precision)
        except BaseException:
            self.close()
            raise

    def _open(self, mode: str, precision: str) -> None:
        try:
            self.root = zarr.open_group(self.path, mode="a" if mode == "w" else mode)
        except (FileNotFoundError, ValueError, zarr.errors.GroupNotFoundError) as exc:
            raise DataError(self.path, "store", "a Zarr v3 group", f"{type(exc).__name__}: {exc}") from None
        if mode == "w":  # start over, keeping the lock/lease files (they are not Zarr nodes)
            for name in list(self.root.keys()):
                del self.root[name]
            self.root.attrs.clear()
        info = self.root.attrs.get("rtml_store")
        if info is None:
            if mode == "r":
                raise DataError(self.path, "attrs/rtml_store", "an rtml trajectory store (root attribute missing)")
            info = {"schema_version": SCHEMA_VERSION, "density_dtype": DTYPES[precision],
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            self.root.attrs["rtml_store"] = info
        if info.get("schema_version") not in READABLE_SCHEMAS:
            raise DataError(self.path, "attrs/rtml_store/schema_version", f"one of {READABLE_SCHEMAS}",
                            repr(info.get("schema_version")))
        self.schema_version = info["schema_version"]
        self.density_dtype = info["density_dtype"]
        self._index = StoreIndex(self.path, self.root, legacy=info.get("index"))

    def close(self) -> None:
        """Release the writer lock/lease (reading stays possible)."""
        if getattr(self, "_writer", None) is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- index ---------------------------------------------------------------------------------------------------
    @property
    def index(self) -> list[dict]:
        """One dict per complete trajectory: id, molecule, geometry, field, nbf, n_spin, n_steps, dt, checksums
        (fresh: includes other writers' appends)."""
        return list(self._index.entries().values())

    def ids(self) -> list[str]:
        return list(self._index.entries())

    def __len__(self) -> int:
        return len(self._index.entries())

    def __contains__(self, traj_id: str) -> bool:
        return self._index.get(traj_id) is not None

    def entry(self, traj_id: str) -> dict:
        e = self._index.get(traj_id)
        if e is None:
            raise DataError(self.path, "trajectory", f"an id in the store index ({len(self)} trajectories)",
                            traj_id)
        return e

    # -- writing ---------------------------------------------------------------------------------------------------
    def append(self, traj: Trajectory, traj_id: str, **index_extra) -> dict:
        """Write one validated trajectory under ``traj_id``; the index entry is committed last."""
        if self._writer is None:
            raise DataError(self.path, "mode", "a store opened for writing (mode 'a' or 'w', not closed)",
                            "read-only" if self.mode == "r" else "closed")
        check_id(self.path, traj_id)
        traj.validate(f"trajectory {traj_id}")
        with self._writer.held():
            if traj_id in self:
                raise DataError(self.path, "trajectory", "a new id (already in the index)", traj_id)
            entry = self._write_arrays(traj, traj_id, index_extra)
            self._writer.check()  # a remote writer that lost its lease stops here, before the commit
            self._index.append(entry)  # the commit point
        return entry

    def _write_arrays(self, traj: Trajectory, traj_id: str, index_extra: dict) -> dict:
        grp_path = f"trajectories/{traj_id}"
        if grp_path in self.root:  # leftover of an interrupted append
            del self.root[grp_path]
        g = self.root.create_group(grp_path)
        T, S, n, _ = traj.density.shape
        dens = traj.density.astype(self.density_dtype)
        shard = min(self.shard_steps, T)
        chunk = min(self.chunk_steps, shard)
        shard -= shard % chunk
        a = g.create_array("density", shape=dens.shape, dtype=dens.dtype, chunks=(chunk, S, n, n),
                           shards=(shard, S, n, n))
        a[:] = dens
        if traj.xc_potential is not None:
            if self.schema_version < 2:
                raise DataError(self.path, "attrs/rtml_store/schema_version",
                                "2 to store xc_potential (this store is schema 1: write into a new store)", "1")
            x = g.create_array("xc_potential", shape=dens.shape, dtype=traj.xc_potential.dtype,
                               chunks=(chunk, S, n, n), shards=(shard, S, n, n))
            x[:] = traj.xc_potential
            index_extra = {"checksum_xc_potential": _digest(np.asarray(traj.xc_potential)), **index_extra}
        for name, arr in (("field", traj.field), ("time", traj.time), ("energy", traj.energy),
                          ("dipole", traj.dipole), ("positions", traj.positions), ("overlap", traj.overlap),
                          ("atomic_numbers", traj.atomic_numbers.astype(np.int32)),
                          ("basis_atom_index", traj.basis.atom_index), ("basis_l", traj.basis.l),
                          ("basis_m", traj.basis.m), ("basis_shell", traj.basis.shell_index)):
            g.create_array(name, data=np.ascontiguousarray(arr))
        if traj.core_hamiltonian is not None:
            g.create_array("core_hamiltonian", data=np.ascontiguousarray(traj.core_hamiltonian))
        g.attrs.update({"molecule": traj.molecule, "charge": int(traj.charge), "multiplicity": int(traj.multiplicity),
                        "n_electrons": int(traj.n_electrons), "basis": traj.basis_name,
                        "functional": traj.functional, "dt": float(traj.dt), "meta": traj.meta_json()})
        entry = {"id": traj_id, "molecule": traj.molecule, "nbf": n, "n_spin": S, "n_steps": T, "dt": float(traj.dt),
                 "n_atoms": traj.n_atoms, "basis": traj.basis_name, "functional": traj.functional,
                 "field": traj.meta.get("field_spec", {}).get("label") or traj.meta.get("field_spec", {}).get("kind"),
                 "checksum_density": _digest(dens), "checksum_dipole": _digest(traj.dipole),
                 "xc_potential": traj.xc_potential is not None, **index_extra}
        return entry

    # -- reading ---------------------------------------------------------------------------------------------------
    def __getstate__(self):
        state = dict(self.__dict__)
        for k in ("_arrays", "_reads", "_writer"):  # array handles, cache, lock: per process
            state.pop(k, None)
        state["mode"], state["_writer"] = "r", None  # a copy sent to another process only reads
        return state

    def _array(self, traj_id: str, name: str):
        key = f"trajectories/{traj_id}/{name}"
        cache = self.__dict__.setdefault("_arrays", {})
        if key in cache:
            return cache[key]
        try:
            cache[key] = zarr.open_array(self.path, path=key, mode="r")
            return cache[key]
        except Exception as exc:  # noqa: BLE001 - zarr raises many types for a missing/corrupt array
            raise DataError(f"{self.path}/{key}", name, "a readable Zarr array", f"{type(exc).__name__}: {exc}") \
                from None

    def read_array(self, traj_id: str, name: str, sl=slice(None)) -> np.ndarray:
        arr = self._array(traj_id, name)
        try:
            return np.asarray(arr[sl])
        except Exception as exc:  # noqa: BLE001 - a corrupt chunk surfaces as a codec error deep inside zarr
            raise DataError(f"{self.path}/trajectories/{traj_id}/{name}", name,
                            "decodable chunks (the store is corrupt: re-generate or re-convert this trajectory)",
                            f"{type(exc).__name__}: {exc}") from None

    def read_windows(self, requests: list[tuple[str, str, int, int]]) -> list[np.ndarray]:
        """Many windows at once: [(traj_id, array name, start, stop)] -> [array[start:stop]] (whole chunks fetched
        concurrently, decoded chunks cached; the same values as :meth:`read_array`)."""
        reads = self.__dict__.get("_reads")
        if reads is None:
            reads = self.__dict__["_reads"] = WindowReads(self.cache_bytes)
        try:
            return reads.read([((tid, name), self._array(tid, name), a, b) for tid, name, a, b in requests])
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - a corrupt chunk surfaces as a codec error deep inside zarr
            raise DataError(f"{self.path}/trajectories", "windows", "decodable chunks (the store is corrupt: "
                            "`rtml inspect --verify` names the trajectory)", f"{type(exc).__name__}: {exc}") from None

    def has_xc_potential(self, traj_id: str) -> bool:
        return bool(self.entry(traj_id).get("xc_potential", False))

    def read_xc_potential(self, traj_id: str, sl=slice(None), purpose: str = "this") -> np.ndarray:
        """V_xc(t) frames [T', n_spin, nbf, nbf]; a clear error when the trajectory has none."""
        if not self.has_xc_potential(traj_id):
            raise DataError(f"{self.path}/trajectories/{traj_id}", "xc_potential",
                            f"a recorded V_xc(t) for {purpose} (schema 2 stores generated with record_xc; older "
                            f"stores and NWChem imports have none: set loss.xc_potential=0 or regenerate)")
        return self.read_array(traj_id, "xc_potential", sl)

    def static(self, traj_id: str) -> dict:
        """Geometry, basis metadata and matrices of a trajectory (small; read once per trajectory)."""
        g = zarr.open_group(self.path, path=f"trajectories/{traj_id}", mode="r")
        out = {k: self.read_array(traj_id, k) for k in ("positions", "atomic_numbers", "overlap", "basis_atom_index",
                                                         "basis_l", "basis_m", "basis_shell")}
        out["core_hamiltonian"] = self.read_array(traj_id, "core_hamiltonian") if "core_hamiltonian" in g else None
        out.update({k: g.attrs[k] for k in ("molecule", "charge", "multiplicity", "n_electrons", "basis",
                                            "functional", "dt")})
        out["meta"] = json.loads(g.attrs["meta"])
        return out

    def read(self, traj_id: str, verify: bool = True, tol: Tolerances | None = None) -> Trajectory:
        """The whole trajectory; ``verify`` checks every checksum of its index entry (density, dipole, V_xc)."""
        entry = self.entry(traj_id)
        st = self.static(traj_id)
        dens = self.read_array(traj_id, "density")
        dipole = self.read_array(traj_id, "dipole")
        xc = self.read_array(traj_id, "xc_potential") if entry.get("xc_potential") else None
        if verify:
            for name, arr in (("density", dens), ("dipole", dipole), ("xc_potential", xc)):
                want = entry.get(f"checksum_{name}")
                if want is not None and arr is not None and _digest(arr) != want:
                    raise DataError(f"{self.path}/trajectories/{traj_id}/{name}", name,
                                    f"content matching the index checksum {want[:12]}… (the store is corrupt: "
                                    "re-generate or re-convert this trajectory)", f"sha256 {_digest(arr)[:12]}…")
        traj = Trajectory(
            molecule=st["molecule"], atomic_numbers=st["atomic_numbers"], positions=st["positions"],
            charge=st["charge"], multiplicity=st["multiplicity"], n_electrons=st["n_electrons"],
            basis_name=st["basis"], functional=st["functional"], dt=st["dt"],
            basis=BasisInfo(atom_index=st["basis_atom_index"], l=st["basis_l"], m=st["basis_m"],
                            shell_index=st["basis_shell"]),
            overlap=st["overlap"], core_hamiltonian=st["core_hamiltonian"], density=dens.astype(np.complex128),
            field=self.read_array(traj_id, "field"), time=self.read_array(traj_id, "time"),
            energy=self.read_array(traj_id, "energy"), dipole=dipole, meta=st["meta"], xc_potential=xc,
        )
        return traj.validate(f"{self.path}/trajectories/{traj_id}", tol)

    def verify(self, progress: bool = False) -> list[str]:
        """Re-read every trajectory, check checksums and physics; returns the problems found (empty if none)."""
        from tqdm.auto import tqdm

        problems = []
        for tid in tqdm(self.ids(), desc="verify", disable=not progress):
            try:
                self.read(tid, verify=True)
            except DataError as exc:
                problems.append(str(exc))
        return problems

    def summary(self) -> dict:
        idx = self.index
        by_mol: dict[str, dict] = {}
        for e in idx:
            m = by_mol.setdefault(e["molecule"], {"trajectories": 0, "steps": 0, "nbf": e["nbf"], "fields": set()})
            m["trajectories"] += 1
            m["steps"] += e["n_steps"]
            m["fields"].add(e.get("field") or "?")
        for m in by_mol.values():
            m["fields"] = sorted(m["fields"])
        size = sum(f.stat().st_size for f in Path(self.path).rglob("*") if f.is_file()) if not is_remote(self.path) \
            else None
        return {"path": self.path, "trajectories": len(idx), "steps": sum(e["n_steps"] for e in idx),
                "density_dtype": self.density_dtype, "bytes_on_disk": size, "molecules": by_mol}
