"""Store read speed: random 64-step windows from the Zarr store versus the same data in HDF5, side by side.

    python benchmarks/bench_store.py [--windows 400] [--chunk-steps 64 --shard-steps 1024]

Both hold the same trajectories (H2O-sized, 13 basis functions, float32 densities) written from the same arrays,
with the same time chunking; every reader's windows are checked equal to the source arrays. Reported with and
without each library's chunk cache (HDF5 has one per dataset; the Zarr store's is :mod:`rtml.datasets.store.
window_reads`), the ratio zarr/hdf5 for both.
"""

from __future__ import annotations

import argparse
import inspect
import json
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from rtml.datasets.basis import BasisInfo
from rtml.datasets.store.window_reads import DEFAULT_CACHE_BYTES
from rtml.datasets.store.zarr_store import TrajectoryStore
from rtml.datasets.trajectory import Trajectory


def synthetic(nbf: int, steps: int, seed: int) -> Trajectory:
    """A valid trajectory with a random unitary-evolved density (content is irrelevant to I/O speed)."""
    rng = np.random.default_rng(seed)
    c = np.linalg.qr(rng.normal(size=(nbf, nbf)) + 1j * rng.normal(size=(nbf, nbf)))[0][:, :5]
    p0 = 2 * c @ c.conj().T
    w = rng.normal(size=nbf) * 0.1
    ph = np.exp(-1j * np.outer(np.arange(steps) * 0.2, w))  # [T, nbf]
    dens = (ph[:, :, None] * p0[None] * ph.conj()[:, None, :])[:, None]  # [T, 1, nbf, nbf]
    n = lambda *s: np.zeros(s)
    return Trajectory(molecule="syn", atomic_numbers=np.array([8, 1], np.int32), positions=n(2, 3), charge=-1,
                      multiplicity=1, n_electrons=10, basis_name="x", functional="x", dt=0.2,
                      basis=BasisInfo(atom_index=np.zeros(nbf, np.int32), l=np.zeros(nbf, np.int32),
                                      m=np.zeros(nbf, np.int32), shell_index=np.arange(nbf, dtype=np.int32)),
                      overlap=np.eye(nbf), core_hamiltonian=None, density=dens, field=n(steps, 3),
                      time=0.2 * np.arange(steps), energy=n(steps), dipole=n(steps, 3))


STORE_DEFAULTS = inspect.signature(TrajectoryStore).parameters  # the store's chunking unless overridden


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=400)
    ap.add_argument("--batch", type=int, default=16, help="windows per read_windows call (a training batch)")
    ap.add_argument("--trajectories", type=int, default=8)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--nbf", type=int, default=13)
    ap.add_argument("--chunk-steps", type=int, default=STORE_DEFAULTS["chunk_steps"].default)
    ap.add_argument("--shard-steps", type=int, default=STORE_DEFAULTS["shard_steps"].default)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    trajs = [synthetic(a.nbf, a.steps, i) for i in range(a.trajectories)]
    with TrajectoryStore(tmp / "b.zarr", mode="a", chunk_steps=a.chunk_steps, shard_steps=a.shard_steps) as st:
        for i, t in enumerate(trajs):
            st.append(t, f"t{i}")
    with h5py.File(tmp / "b.h5", "w") as f:  # one group per trajectory, schema datasets, the Zarr store's chunking
        for i, t in enumerate(trajs):
            for part, arr in (("density_real", t.density.real), ("density_imag", t.density.imag)):
                f.create_dataset(f"t{i}/dynamics/{part}", data=arr.astype(np.float32),
                                 chunks=(a.chunk_steps, 1, a.nbf, a.nbf), compression="gzip", compression_opts=1)
    rng = np.random.default_rng(0)
    picks = [(int(rng.integers(a.trajectories)), int(rng.integers(0, a.steps - 65))) for _ in range(a.windows)]
    win_bytes = 65 * a.nbf * a.nbf * 8
    ref = [trajs[i].density[s0:s0 + 65].astype(np.complex64) for i, s0 in picks]

    def zarr_one_by_one():  # the loader's path before: one synchronous zarr read per window
        s = TrajectoryStore(tmp / "b.zarr", cache_bytes=0)
        return [s.read_array(f"t{i}", "density", slice(s0, s0 + 65)) for i, s0 in picks]

    def zarr_batched(cache_bytes):
        def run():
            s = TrajectoryStore(tmp / "b.zarr", cache_bytes=cache_bytes)
            out = []
            for j in range(0, len(picks), a.batch):
                out += s.read_windows([(f"t{i}", "density", s0, s0 + 65) for i, s0 in picks[j:j + a.batch]])
            return out
        return run

    def hdf5(cache_bytes):
        def run():
            with h5py.File(tmp / "b.h5", "r", rdcc_nbytes=cache_bytes) as f:
                return [f[f"t{i}/dynamics/density_real"][s0:s0 + 65] + 1j * f[f"t{i}/dynamics/density_imag"][s0:s0 + 65]
                        for i, s0 in picks]
        return run

    cases = {"zarr, one read per window (before)": zarr_one_by_one,
             "zarr, batched, no chunk cache": zarr_batched(0),
             "zarr, batched, chunk cache (default)": zarr_batched(DEFAULT_CACHE_BYTES),
             "hdf5, no chunk cache": hdf5(0),
             "hdf5, chunk cache (h5py default 1 MiB/dataset)": hdf5(1024**2)}
    res = {}
    for rep in range(2):  # two rounds, interleaved; the better of the two (the OS page cache is warm for both)
        for name, fn in cases.items():
            t0 = time.perf_counter()
            out = fn()
            rate = a.windows / (time.perf_counter() - t0)
            res[name] = max(res.get(name, 0.0), rate)
            if rep == 0:
                assert all(np.array_equal(x, y) for x, y in zip(out, ref)), name
    size = lambda p: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
    print(f"{a.windows} random 65-frame windows of {a.trajectories} x {a.steps}-step trajectories, nbf {a.nbf}, "
          f"complex64, chunks of {a.chunk_steps} steps (Zarr shards of {a.shard_steps}); one process, 1 core:")
    for name, rate in res.items():
        print(f"  {name:48s} {rate:8.0f} windows/s  {rate * win_bytes / 1e6:7.1f} MB/s")
    z, h = res["zarr, batched, no chunk cache"], res["hdf5, no chunk cache"]
    zc, hc = res["zarr, batched, chunk cache (default)"], res["hdf5, chunk cache (h5py default 1 MiB/dataset)"]
    print(f"zarr/hdf5: without chunk caches {z / h:.2f}, with (each library's default) {zc / hc:.2f}; "
          f"batched/one-by-one zarr {z / res['zarr, one read per window (before)']:.2f}; on disk: zarr "
          f"{size(tmp / 'b.zarr') / 1e6:.1f} MB, hdf5 {size(tmp / 'b.h5') / 1e6:.1f} MB")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "windows_per_s": res}, indent=2))


if __name__ == "__main__":
    main()
