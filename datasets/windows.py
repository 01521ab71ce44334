"""Training windows from a trajectory store: splits, shards, random/sequential windows and batching.

A sample is a window of ``window`` transitions: ``rho[0:window+1]`` so that inputs are ``rho[:-1]`` and targets
``rho[1:]``, with the field at the same times and the trajectory's geometry and basis metadata attached.

Batching choice: **padding with masks**. Densities of different molecules are padded to the largest nbf in the batch
(`basis_mask`), which keeps the dense linear algebra the physics needs (S^-1/2, U rho U^H, traces) batched and fast;
the padded overlap block is the identity so it stays invertible. Atoms are given both padded ([B, A, 3] with
`atom_mask`) and flattened PyG-style (`atom_pos`, `atom_batch`, `edge_index` from :func:`radius_graph`) for the
equivariant geometry encoder. Densities are always spin-resolved in a batch, [B, T+1, 2, N, N]: a closed-shell total
density P becomes (P/2, P/2), so closed- and open-shell molecules share one batch (sum over spin gives P back).

Splits are by trajectory (never by window), decided by a hash of (seed, trajectory id): reproducible and stable
when trajectories are appended to the store.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import IterableDataset

from rtml.datasets.errors import DataError
from rtml.datasets.graph import radius_graph
from rtml.datasets.store.zarr_store import TrajectoryStore

ANGSTROM_TO_BOHR = 1.8897261246


@dataclass(kw_only=True)
class WindowConfig:
    """``window``: transitions per sample; ``mode``: 'random' (with replacement, infinite per epoch length
    ``samples_per_epoch``) or 'sequential' (non-overlapping windows, stride ``stride`` or ``window``);
    ``split_fractions``: train/val/test by trajectory; ``cutoff``: radius-graph cutoff in Å."""

    window: int = 64
    mode: str = "random"
    stride: int | None = None
    samples_per_epoch: int = 1024
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    cutoff: float = 5.0


def split_of(traj_id: str, seed: int, fractions=(0.8, 0.1, 0.1)) -> str:
    u = int(hashlib.sha256(f"{seed}:{traj_id}".encode()).hexdigest()[:12], 16) / 16**12
    return "train" if u < fractions[0] else "val" if u < fractions[0] + fractions[1] else "test"


class WindowDataset(IterableDataset):
    """Windows of one split, sharded over data-parallel ranks (``rank``/``world_size``) and DataLoader workers.

    The store is opened lazily inside each process, so the dataset can be pickled to Ray workers."""

    def __init__(self, store_path: str, split: str = "train", cfg: WindowConfig | None = None, rank: int = 0,
                 world_size: int = 1, ids: list[str] | None = None, kohn_sham: bool = False,
                 xc_potential: bool = False):
        """``kohn_sham``: attach each trajectory's exact Kohn–Sham terms (PySCF, computed once per trajectory and
        process); ``xc_potential``: read the recorded V_xc(t) frames (Fock supervision; the store must have them)."""
        self.store_path, self.split, self.cfg = str(store_path), split, cfg or WindowConfig()
        self.kohn_sham, self.xc_potential = kohn_sham, xc_potential
        self.rank, self.world_size, self.epoch = rank, world_size, 0
        store = TrajectoryStore(self.store_path)
        index = {e["id"]: e for e in store.index}
        if ids is None:
            ids = [i for i in index if split_of(i, self.cfg.seed, self.cfg.split_fractions) == split]
        self.entries = [index[i] for i in sorted(ids) if index[i]["n_steps"] > self.cfg.window]
        if not self.entries:
            raise DataError(self.store_path, f"split '{split}'",
                            f"at least one trajectory longer than window={self.cfg.window} steps",
                            f"{len(ids)} trajectories, none long enough")
        if xc_potential:
            missing = [e["id"] for e in self.entries if not e.get("xc_potential")]
            if missing:
                raise DataError(self.store_path, "xc_potential",
                                "recorded V_xc(t) for Fock supervision in every trajectory (schema-2 stores from "
                                "`rtml generate`; set loss.xc_potential=0 and loss.hamiltonian_alignment=0 to train "
                                "without it)", f"{len(missing)} without, e.g. {missing[0]}")
        self._store = None
        self._static: dict[str, dict] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def trajectory_ids(self) -> list[str]:
        return [e["id"] for e in self.entries]

    def _windows(self) -> list[tuple[str, int]]:
        """Sequential windows of the whole split, in a fixed order."""
        stride = self.cfg.stride or self.cfg.window
        return [(e["id"], s) for e in self.entries for s in range(0, e["n_steps"] - self.cfg.window, stride)]

    def _shard(self) -> tuple[int, int]:
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        return self.rank * nw + wid, self.world_size * nw

    def __iter__(self):
        shard, n_shards = self._shard()
        if self.cfg.mode == "sequential":
            for k, (tid, start) in enumerate(self._windows()):
                if k % n_shards == shard:
                    yield self.sample(tid, start)
            return
        if self.cfg.mode != "random":
            raise DataError("<window config>", "mode", "'random' or 'sequential'", repr(self.cfg.mode))
        rng = np.random.default_rng([self.cfg.seed, self.epoch, shard])
        weights = np.array([e["n_steps"] - self.cfg.window for e in self.entries], float)
        for _ in range(self.cfg.samples_per_epoch // n_shards):
            e = self.entries[rng.choice(len(self.entries), p=weights / weights.sum())]
            yield self.sample(e["id"], int(rng.integers(0, e["n_steps"] - self.cfg.window)))

    def __len__(self) -> int:
        n = len(self._windows()) if self.cfg.mode == "sequential" else self.cfg.samples_per_epoch
        return n // self.world_size

    def sample(self, traj_id: str, start: int, length: int | None = None) -> dict:
        """Window of ``length`` transitions (default ``cfg.window``) starting at frame ``start``."""
        if self._store is None:
            self._store = TrajectoryStore(self.store_path)
        if traj_id not in self._static:
            self._static[traj_id] = self._store.static(traj_id)
        st = self._static[traj_id]
        if self.kohn_sham and "ks" not in st:
            from rtml.datasets.kohn_sham import kohn_sham_terms

            st["ks"] = kohn_sham_terms(st, self._store.read_array(traj_id, "density", slice(0, 1))[0],
                                       source=f"{self.store_path}/trajectories/{traj_id}")
        sl = slice(start, start + (length or self.cfg.window) + 1)
        extra = {"xc_potential": self._store.read_xc_potential(traj_id, sl, "Fock supervision")} \
            if self.xc_potential else {}
        return {"traj_id": traj_id, "start": start, "static": st, **extra,
                "rho": self._store.read_array(traj_id, "density", sl),  # [T+1, S, nbf, nbf]
                "field": self._store.read_array(traj_id, "field", sl),  # [T+1, 3]
                "time": self._store.read_array(traj_id, "time", sl)}  # [T+1]


@dataclass(kw_only=True)
class WindowBatch:
    rho: torch.Tensor  # [B, T+1, 2, N, N] complex64 (spin-resolved, zero-padded)
    field: torch.Tensor  # [B, T+1, 3] float32, a.u.
    time: torch.Tensor  # [B, T+1] float64, a.u.
    overlap: torch.Tensor  # [B, N, N] float64, identity on padding
    basis_mask: torch.Tensor  # [B, N] bool
    basis_atom: torch.Tensor  # [B, N] int64, -1 on padding
    basis_l: torch.Tensor  # [B, N] int64
    basis_m: torch.Tensor  # [B, N] int64
    positions: torch.Tensor  # [B, A, 3] float64, bohr
    atomic_numbers: torch.Tensor  # [B, A] int64, 0 on padding
    atom_mask: torch.Tensor  # [B, A] bool
    atom_pos: torch.Tensor  # [sum A, 3] float64, bohr (flattened, PyG style)
    atom_z: torch.Tensor  # [sum A] int64
    atom_batch: torch.Tensor  # [sum A] int64
    edge_index: torch.Tensor  # [2, E] int64 into the flattened atoms
    n_electrons: torch.Tensor  # [B] int64
    traj_ids: list
    starts: list
    ks: object = None  # rtml.datasets.kohn_sham.KohnShamBatch when the reader attaches Kohn–Sham terms
    xc_potential: torch.Tensor | None = None  # [B, T+1, 2, N, N] complex64, V_xc(t) per spin (Fock supervision)


def collate_windows(samples: list[dict], cutoff: float = 5.0) -> WindowBatch:
    B = len(samples)
    N = max(s["rho"].shape[-1] for s in samples)
    A = max(len(s["static"]["atomic_numbers"]) for s in samples)
    T1 = samples[0]["rho"].shape[0]
    rho = torch.zeros(B, T1, 2, N, N, dtype=torch.complex64)
    ovl = torch.eye(N, dtype=torch.float64).repeat(B, 1, 1)
    bmask = torch.zeros(B, N, dtype=torch.bool)
    batom = torch.full((B, N), -1, dtype=torch.long)
    bl, bm = torch.zeros(B, N, dtype=torch.long), torch.zeros(B, N, dtype=torch.long)
    pos = torch.zeros(B, A, 3, dtype=torch.float64)
    z = torch.zeros(B, A, dtype=torch.long)
    amask = torch.zeros(B, A, dtype=torch.bool)
    for b, s in enumerate(samples):
        st, r = s["static"], torch.from_numpy(s["rho"].astype(np.complex64))
        n, a = r.shape[-1], len(st["atomic_numbers"])
        if r.shape[1] == 1:
            rho[b, :, :, :n, :n] = 0.5 * r  # closed shell: P -> (P/2, P/2)
        else:
            rho[b, :, :, :n, :n] = r
        ovl[b, :n, :n] = torch.from_numpy(st["overlap"])
        bmask[b, :n] = True
        batom[b, :n] = torch.from_numpy(st["basis_atom_index"].astype(np.int64))
        bl[b, :n] = torch.from_numpy(st["basis_l"].astype(np.int64))
        bm[b, :n] = torch.from_numpy(st["basis_m"].astype(np.int64))
        pos[b, :a] = torch.from_numpy(st["positions"] * ANGSTROM_TO_BOHR)
        z[b, :a] = torch.from_numpy(st["atomic_numbers"].astype(np.int64))
        amask[b, :a] = True
    ks = vxc = None
    if all("ks" in s["static"] for s in samples):
        from rtml.datasets.kohn_sham import KohnShamBatch, potential_spin_resolved

        ks = KohnShamBatch.from_terms([s["static"]["ks"] for s in samples], N)
        if all("xc_potential" in s for s in samples):
            vxc = torch.zeros(B, T1, 2, N, N, dtype=torch.complex64)
            for b, s in enumerate(samples):
                n = s["xc_potential"].shape[-1]
                vxc[b, :, :, :n, :n] = potential_spin_resolved(s["xc_potential"]).to(torch.complex64)
    atom_batch = torch.arange(B).repeat_interleave(amask.sum(1))
    atom_pos = pos[amask]
    return WindowBatch(
        rho=rho, field=torch.from_numpy(np.stack([s["field"] for s in samples]).astype(np.float32)),
        time=torch.from_numpy(np.stack([s["time"] for s in samples])), overlap=ovl, basis_mask=bmask,
        basis_atom=batom, basis_l=bl, basis_m=bm, positions=pos, atomic_numbers=z, atom_mask=amask,
        atom_pos=atom_pos, atom_z=z[amask], atom_batch=atom_batch,
        edge_index=radius_graph(atom_pos, cutoff * ANGSTROM_TO_BOHR, atom_batch),
        n_electrons=torch.tensor([int(s["static"]["n_electrons"]) for s in samples]),
        traj_ids=[s["traj_id"] for s in samples], starts=[s["start"] for s in samples], ks=ks, xc_potential=vxc,
    )
