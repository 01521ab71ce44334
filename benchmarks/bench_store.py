"""Store read speed: random 64-step windows from the Zarr store versus the same data in HDF5, side by side.

    python benchmarks/bench_store.py [--windows 400]

Both hold the same trajectories (H2O-sized, 13 basis functions, float32 densities) written from the same arrays.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from rtml.datasets.basis import BasisInfo
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=400)
    ap.add_argument("--trajectories", type=int, default=8)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--nbf", type=int, default=13)
    ap.add_argument("--chunk-steps", type=int, default=32)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    trajs = [synthetic(a.nbf, a.steps, i) for i in range(a.trajectories)]
    st = TrajectoryStore(tmp / "b.zarr", mode="a", chunk_steps=a.chunk_steps)
    for i, t in enumerate(trajs):
        st.append(t, f"t{i}")
    with h5py.File(tmp / "b.h5", "w") as f:  # one file, one group per trajectory, schema datasets, same chunking as the Zarr store
        for i, t in enumerate(trajs):
            for part, arr in (("density_real", t.density.real), ("density_imag", t.density.imag)):
                f.create_dataset(f"t{i}/dynamics/{part}", data=arr.astype(np.float32),
                                 chunks=(a.chunk_steps, 1, a.nbf, a.nbf), compression="gzip", compression_opts=1)
    rng = np.random.default_rng(0)
    picks = [(int(rng.integers(a.trajectories)), int(rng.integers(0, a.steps - 65))) for _ in range(a.windows)]
    win_bytes = 65 * a.nbf * a.nbf * 8

    def bench_zarr():
        s = TrajectoryStore(tmp / "b.zarr")
        for i, s0 in picks:
            s.read_array(f"t{i}", "density", slice(s0, s0 + 65))

    def bench_h5():
        with h5py.File(tmp / "b.h5", "r") as f:
            for i, s0 in picks:
                re_ = f[f"t{i}/dynamics/density_real"][s0 : s0 + 65]
                im_ = f[f"t{i}/dynamics/density_imag"][s0 : s0 + 65]
                re_ + 1j * im_

    res = {}
    for name, fn in (("zarr", bench_zarr), ("hdf5", bench_h5), ("zarr ", bench_zarr), ("hdf5 ", bench_h5)):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        res[name.strip()] = a.windows / dt  # second pass (warm cache) overwrites the first
    size = lambda p: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
    for k in ("zarr", "hdf5"):
        print(f"{k:5s}: {res[k]:8.0f} windows/s, {res[k] * win_bytes / 1e6:7.1f} MB/s of density "
              f"(65 x {a.nbf}^2 complex64 per window)")
    print(f"zarr/hdf5 ratio: {res['zarr'] / res['hdf5']:.2f}; on disk: zarr {size(tmp / 'b.zarr') / 1e6:.1f} MB, "
          f"hdf5 {size(tmp / 'b.h5') / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
