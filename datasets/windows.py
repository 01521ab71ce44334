"""Training windows from a trajectory store: splits, window reads and batching.

A window of ``h`` transitions is read as ``h + 2`` frames, ``rho[s-1 : s+h+1]``: **frame 0 of a window is the frame
before it** (ρ(t0 − Δt): the model's first Δρ, which warms the recurrent state, as the rollout evaluation's context
does), frame 1 is the window's initial state ρ(t0), frames 2… are the targets. :class:`WindowBatch` names these
(``prev``, ``initial``, ``inputs``, ``targets``, ``window_field``, ``window_xc``); code never indexes the time axis
itself. Window starts are ``s ≥ FIRST_START`` = 2 frames, so the previous frame is frame ≥ 1 of the trajectory and
never precedes a kick applied between frames 0 and 1 (the same convention for ``rtml train`` and ``rtml meta-train``).

Batching choice: **padding with masks**. Densities of different molecules are padded to the largest nbf in the batch
(`basis_mask`), which keeps the dense linear algebra the physics needs (S^-1/2, U rho U^H, traces) batched and fast;
the padded overlap block is the identity so it stays invertible. Atoms are padded ([B, A, 3] with `atom_mask`); the
equivariant geometry encoder builds its own radius graph from them. Densities are always spin-resolved in a batch, [B, T, 2, N, N]: a closed-shell total density P becomes
(P/2, P/2), so closed- and open-shell molecules share one batch (sum over spin gives P back).

Splits are by trajectory (never by window), decided by a hash of (seed, trajectory id): reproducible and stable
when trajectories are appended to the store.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from rtml.datasets.errors import DataError
from rtml.datasets.kohn_sham import KohnShamBatch, kohn_sham_terms, potential_spin_resolved
from rtml.datasets.sized_cache import SizedLRU
from rtml.datasets.store.zarr_store import TrajectoryStore
from rtml.datasets.units import ANGSTROM_TO_BOHR

TERMS_CACHE_MB = 1024  # per process: exact Kohn–Sham terms (H2O/6-31G ~0.1 MB, C6H6 ~100 MB with the dense kernel)
FIRST_START = 2  # earliest window start (frame of ρ(t0)): its previous frame is frame 1, after a kick at dt/2


def first_start(stride: int = 1) -> int:
    """Earliest window start for windows of steps of ``stride`` frames: the previous frame (``stride`` back) must
    come after a kick (frame ≥ 1)."""
    return max(FIRST_START, stride + 1)


def split_of(traj_id: str, seed: int, fractions=(0.8, 0.1, 0.1)) -> str:
    u = int(hashlib.sha256(f"{seed}:{traj_id}".encode()).hexdigest()[:12], 16) / 16**12
    return "train" if u < fractions[0] else "val" if u < fractions[0] + fractions[1] else "test"


class WindowReader:
    """Reads windows of chosen trajectories of a store (``ids``, else the trajectories of ``split`` by the hash
    split ``split_seed``/``split_fractions``) that are long enough for ``horizon`` transitions.

    The store is opened lazily inside each process, so a reader can be pickled to Ray workers."""

    def __init__(self, store_path: str, horizon: int, split: str = "all", ids: list[str] | None = None,
                 split_seed: int = 0, split_fractions=(0.8, 0.1, 0.1), kohn_sham: bool = False,
                 xc_potential: bool = False, max_geometries: int | None = None, stride: int = 1):
        """``kohn_sham``: attach each trajectory's exact Kohn–Sham terms (PySCF, computed once per trajectory and
        process); ``xc_potential``: read the recorded V_xc(t) frames (Fock supervision; the store must have them);
        ``max_geometries``: only trajectories of geometry index < this (the index ``rtml generate`` records; for
        learning curves over the number of geometries; None: all)."""
        self.store_path, self.split, self.horizon, self.stride = str(store_path), split, horizon, stride
        self.kohn_sham, self.xc_potential = kohn_sham, xc_potential
        store = TrajectoryStore(self.store_path)
        index = {e["id"]: e for e in store.index}
        if ids is None:
            ids = list(index) if split == "all" else [
                i for i in index if split_of(i, split_seed, tuple(split_fractions)) == split]
        if max_geometries is not None:
            ids = [i for i in ids if int(index[i].get("geometry", 0)) < max_geometries]
        self.entries = [index[i] for i in sorted(ids) if self.n_starts(index[i]["n_steps"], horizon, stride) > 0]
        self.too_short = sorted(set(ids) - {e["id"] for e in self.entries})  # said, not silently dropped
        if self.too_short and self.entries:
            warnings.warn(f"{self.store_path}: {len(self.too_short)} of {len(ids)} trajectories of split '{split}' "
                          f"have at most {first_start(stride) + horizon * stride} frames, too few for windows of {horizon} "
                          f"transitions, and are left out (e.g. {self.too_short[0]})", stacklevel=2)
        if not self.entries:
            raise DataError(self.store_path, f"split '{split}'",
                            f"at least one trajectory with more than {first_start(stride) + horizon * stride} frames "
                            f"(windows of {horizon} transitions of {stride} frames start at frame "
                            f"{first_start(stride)})",
                            f"{len(ids)} trajectories, none long enough")
        if xc_potential:
            missing = [e["id"] for e in self.entries if not e.get("xc_potential")]
            if missing:
                raise DataError(self.store_path, "xc_potential",
                                "recorded V_xc(t) for Fock supervision in every trajectory (schema-2 stores from "
                                "`rtml generate`; set loss.xc_potential=0 and loss.hamiltonian_alignment=0 to train "
                                "without it)", f"{len(missing)} without, e.g. {missing[0]}")
        self.n_steps = {e["id"]: e["n_steps"] for e in self.entries}
        self._store = None
        self._static: dict[str, dict] = {}  # geometry, basis, field and time axes: small, kept
        self._terms = SizedLRU(TERMS_CACHE_MB, lambda t: t.nbytes)  # exact Kohn–Sham terms: bounded

    @staticmethod
    def n_starts(n_steps: int, horizon: int, stride: int = 1) -> int:
        """How many window starts a trajectory has (``n_steps`` = its frame count in the store index):
        first_start(stride) … n_steps − 1 − horizon·stride."""
        return n_steps - horizon * stride - first_start(stride)

    def sample(self, traj_id: str, start: int, horizon: int | None = None) -> dict:
        """The window of ``horizon`` transitions (default: the reader's) whose initial state is frame ``start``
        (frames ``start - 1 … start + horizon``)."""
        return self.sample_many([(traj_id, start, self.horizon if horizon is None else horizon)])[0]

    def sample_many(self, plan: list[tuple[str, int, int]]) -> list[dict]:
        """The windows (trajectory id, start, horizon) of a batch, read together: the density (and V_xc) chunks
        they need are fetched concurrently and cached (:meth:`TrajectoryStore.read_windows`); field and time are
        small and read once per trajectory."""
        for traj_id, start, h in plan:
            if traj_id not in self.n_steps:
                raise DataError(self.store_path, "trajectory", f"one of the reader's {len(self.n_steps)} "
                                                               "trajectories", traj_id)
            last = self.n_steps[traj_id] - 1 - h * self.stride
            if not first_start(self.stride) <= start <= last:
                raise DataError(f"{self.store_path}/trajectories/{traj_id}", "window start",
                                f"{first_start(self.stride)} <= start <= frames - 1 - horizon·stride = {last}", start)
        if self._store is None:
            self._store = TrajectoryStore(self.store_path)
        names = ("density", "xc_potential") if self.xc_potential else ("density",)
        s_ = self.stride  # frames per step: windows are every s-th frame from start - s to start + h·s
        arrays = self._store.read_windows([(t, name, s - s_, s + h * s_ + 1) for t, s, h in plan for name in names])
        out = []
        for k, (traj_id, start, h) in enumerate(plan):
            st = self._static_of(traj_id)
            sl = slice(start - s_, start + h * s_ + 1)
            got = dict(zip(names, arrays[k * len(names):(k + 1) * len(names)]))
            extra = {"xc_potential": got["xc_potential"][::s_]} if self.xc_potential else {}
            fine = st["field"][sl]  # [(h+1)·s + 1, 3]
            mids = 0.5 * (fine[1:] + fine[:-1])  # [(h+1)·s, 3]
            terms = {"ks": self._terms_of(traj_id, st)} if self.kohn_sham else {}
            out.append({"traj_id": traj_id, "start": start, "static": st, **extra, **terms,
                        "rho": got["density"][::s_],  # [h+2, S, nbf, nbf]
                        "field": fine[::s_],  # [h+2, 3]
                        "field_mid": mids.reshape(h + 1, s_, 3).mean(1),  # [h+1, 3]: E averaged over each step
                        "time": st["time"][sl][::s_]})  # [h+2]
        return out

    def _static_of(self, traj_id: str) -> dict:
        """Geometry, basis, matrices, the whole field and time axes (and Kohn–Sham terms): once per trajectory."""
        st = self._static.get(traj_id)
        if st is None:
            st = self._static[traj_id] = self._store.static(traj_id)
            st["field"] = self._store.read_array(traj_id, "field")  # [T, 3] float64
            st["time"] = self._store.read_array(traj_id, "time")  # [T] float64
        return st

    def _terms_of(self, traj_id: str, st: dict):
        """The trajectory's exact Kohn–Sham terms (:mod:`rtml.datasets.kohn_sham`), rebuilt when the bounded cache
        has let them go."""
        terms = self._terms.get(traj_id)
        if terms is None:
            terms = kohn_sham_terms(st, self._store.read_array(traj_id, "density", slice(0, 1))[0],
                                    source=f"{self.store_path}/trajectories/{traj_id}")
            self._terms.put(traj_id, terms)
        return terms


@dataclass(kw_only=True)
class WindowBatch:
    """A batch of windows; the time axis holds T + 2 frames (the previous frame, ρ(t0), T targets)."""
    rho: torch.Tensor  # [B, T+2, 2, N, N] complex64 (spin-resolved, zero-padded)
    field: torch.Tensor  # [B, T+2, 3] float32, a.u.
    time: torch.Tensor  # [B, T+2] float64, a.u.
    overlap: torch.Tensor  # [B, N, N] float64, identity on padding
    basis_mask: torch.Tensor  # [B, N] bool
    basis_atom: torch.Tensor  # [B, N] int64, -1 on padding
    basis_l: torch.Tensor  # [B, N] int64
    basis_m: torch.Tensor  # [B, N] int64
    positions: torch.Tensor  # [B, A, 3] float64, bohr
    atomic_numbers: torch.Tensor  # [B, A] int64, 0 on padding
    atom_mask: torch.Tensor  # [B, A] bool
    n_electrons: torch.Tensor  # [B] int64
    traj_ids: list
    starts: list
    ks: object = None  # rtml.datasets.kohn_sham.KohnShamBatch when the reader attaches Kohn–Sham terms
    xc_potential: torch.Tensor | None = None  # [B, T+2, 2, N, N] complex64, V_xc(t) per spin (Fock supervision)
    field_mid: torch.Tensor | None = None  # [B, T+1, 3] float64, a.u.: the field averaged over each step

    @property
    def window_field_mid(self) -> torch.Tensor | None:
        """The field over each of the window's T steps [B, T, 3] (its mean on the store's grid: strided windows)."""
        return None if self.field_mid is None else self.field_mid[:, 1:]

    @property
    def horizon(self) -> int:
        """T: transitions per window."""
        return self.rho.shape[1] - 2

    @property
    def prev(self) -> torch.Tensor:
        """ρ(t0 − Δt) [B, 2, N, N]: the frame before the window (first Δρ, recurrent warm-up)."""
        return self.rho[:, 0]

    @property
    def initial(self) -> torch.Tensor:
        """ρ(t0) [B, 2, N, N]: the window's initial state (where a rollout starts)."""
        return self.rho[:, 1]

    @property
    def inputs(self) -> torch.Tensor:
        """ρ(t0 … t0 + (T−1)Δt) [B, T, 2, N, N]: teacher-forced inputs (= the trivial one-step prediction)."""
        return self.rho[:, 1:-1]

    @property
    def targets(self) -> torch.Tensor:
        """ρ(t0 + Δt … t0 + TΔt) [B, T, 2, N, N]."""
        return self.rho[:, 2:]

    @property
    def window_rho(self) -> torch.Tensor:
        """ρ(t0 … t0 + TΔt) [B, T+1, 2, N, N]: initial state and targets."""
        return self.rho[:, 1:]

    @property
    def window_field(self) -> torch.Tensor:
        """E(t0 … t0 + TΔt) [B, T+1, 3] a.u."""
        return self.field[:, 1:]

    @property
    def window_xc(self) -> torch.Tensor | None:
        """V_xc(t0 … t0 + TΔt) [B, T+1, 2, N, N] (None when not read)."""
        return None if self.xc_potential is None else self.xc_potential[:, 1:]

    @property
    def dt(self) -> float:
        """The batch's time step (a.u.); windows of one batch must share it."""
        dts = self.time[:, 1] - self.time[:, 0]
        if float(dts.max() - dts.min()) > 1e-6 * float(dts.abs().max()):
            raise ValueError(f"windows of one batch have different time steps {dts.tolist()} (trajectories "
                             f"{self.traj_ids}); train on stores with one dt")
        return float(dts.mean())


def collate_windows(samples: list[dict]) -> WindowBatch:
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
    if all("ks" in s for s in samples):
        ks = KohnShamBatch.from_terms([s["ks"] for s in samples], N)
        if all("xc_potential" in s for s in samples):
            vxc = torch.zeros(B, T1, 2, N, N, dtype=torch.complex64)
            for b, s in enumerate(samples):
                n = s["xc_potential"].shape[-1]
                vxc[b, :, :, :n, :n] = potential_spin_resolved(s["xc_potential"]).to(torch.complex64)
    return WindowBatch(
        rho=rho, field=torch.from_numpy(np.stack([s["field"] for s in samples]).astype(np.float32)),
        time=torch.from_numpy(np.stack([s["time"] for s in samples])), overlap=ovl, basis_mask=bmask,
        basis_atom=batom, basis_l=bl, basis_m=bm, positions=pos, atomic_numbers=z, atom_mask=amask,
        n_electrons=torch.tensor([int(s["static"]["n_electrons"]) for s in samples]),
        traj_ids=[s["traj_id"] for s in samples], starts=[s["start"] for s in samples], ks=ks, xc_potential=vxc,
        field_mid=torch.from_numpy(np.stack([s["field_mid"] for s in samples])) if all(
            "field_mid" in s for s in samples) else None,
    )
