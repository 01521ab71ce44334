"""Static per-molecule inputs of the surrogate, padded to a batch: geometry, basis metadata and overlap.

Everything here is constant along a trajectory; the time-dependent inputs (density, field) are passed separately.
Lengths are in bohr, like the rest of the model; :func:`from_trajectories` converts from the datasets' Å.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from rtml.datasets.kohn_sham import KohnShamBatch, kohn_sham_terms, static_of
from rtml.datasets.units import ANGSTROM_TO_BOHR


@dataclass(kw_only=True)
class MoleculeBatch:
    positions: torch.Tensor  # [B, A, 3] real, bohr
    atomic_numbers: torch.Tensor  # [B, A] int64, 0 on padding
    atom_mask: torch.Tensor  # [B, A] bool
    overlap: torch.Tensor  # [B, N, N] real, identity on padding
    basis_mask: torch.Tensor  # [B, N] bool
    basis_atom: torch.Tensor  # [B, N] int64, -1 on padding
    basis_l: torch.Tensor  # [B, N] int64
    basis_m: torch.Tensor  # [B, N] int64
    ks: KohnShamBatch | None = None  # exact Kohn–Sham terms (float64, never cast), for the kohn_sham head

    @property
    def batch_size(self) -> int:
        return int(self.positions.shape[0])

    @property
    def nbf(self) -> int:
        return int(self.overlap.shape[-1])

    def to(self, device=None, dtype=None) -> MoleculeBatch:
        """Move to a device; ``dtype`` (a real float type) applies to positions and overlap only."""
        out = {"ks": None if self.ks is None else self.ks.to(device)}
        for f in fields(self):
            if f.name == "ks":
                continue
            v = getattr(self, f.name)
            out[f.name] = v.to(device=device, dtype=dtype) if (dtype is not None and v.is_floating_point()) \
                else v.to(device=device)
        return MoleculeBatch(**out)

    @classmethod
    def from_window(cls, batch) -> MoleculeBatch:
        """From a :class:`rtml.datasets.windows.WindowBatch` (positions already in bohr)."""
        return cls(positions=batch.positions, atomic_numbers=batch.atomic_numbers, atom_mask=batch.atom_mask,
                   overlap=batch.overlap, basis_mask=batch.basis_mask, basis_atom=batch.basis_atom,
                   basis_l=batch.basis_l, basis_m=batch.basis_m, ks=batch.ks)

    @classmethod
    def from_trajectories(cls, trajs: list, dtype=torch.float64, kohn_sham: bool = False,
                          ks_terms: list | None = None) -> MoleculeBatch:
        """Pad several :class:`rtml.datasets.trajectory.Trajectory` (possibly different molecules and bases).
        ``kohn_sham``: also compute the exact Kohn–Sham terms with PySCF (reference density = each trajectory's
        first frame), or pass them precomputed as ``ks_terms``."""
        B = len(trajs)
        N = max(t.overlap.shape[-1] for t in trajs)
        A = max(len(t.atomic_numbers) for t in trajs)
        out = cls(positions=torch.zeros(B, A, 3, dtype=dtype), atomic_numbers=torch.zeros(B, A, dtype=torch.long),
                  atom_mask=torch.zeros(B, A, dtype=torch.bool), overlap=torch.eye(N, dtype=dtype).repeat(B, 1, 1),
                  basis_mask=torch.zeros(B, N, dtype=torch.bool), basis_atom=torch.full((B, N), -1),
                  basis_l=torch.zeros(B, N, dtype=torch.long), basis_m=torch.zeros(B, N, dtype=torch.long))
        for b, t in enumerate(trajs):
            n, a = t.overlap.shape[-1], len(t.atomic_numbers)
            out.positions[b, :a] = torch.from_numpy(np.asarray(t.positions) * ANGSTROM_TO_BOHR)
            out.atomic_numbers[b, :a] = torch.from_numpy(np.asarray(t.atomic_numbers, np.int64))
            out.atom_mask[b, :a] = True
            out.overlap[b, :n, :n] = torch.from_numpy(np.asarray(t.overlap))
            out.basis_mask[b, :n] = True
            out.basis_atom[b, :n] = torch.from_numpy(np.asarray(t.basis.atom_index, np.int64))
            out.basis_l[b, :n] = torch.from_numpy(np.asarray(t.basis.l, np.int64))
            out.basis_m[b, :n] = torch.from_numpy(np.asarray(t.basis.m, np.int64))
        if kohn_sham or ks_terms is not None:
            if ks_terms is None:
                once = {id(t): t for t in trajs}  # a trajectory repeated in the batch is computed once
                once = {k: kohn_sham_terms(static_of(t), t.density[0]) for k, t in once.items()}
                ks_terms = [once[id(t)] for t in trajs]
            out.ks = KohnShamBatch.from_terms(ks_terms, N)
        return out


def spin_resolved(density: np.ndarray | torch.Tensor, nbf_pad: int | None = None) -> torch.Tensor:
    """[..., S, n, n] AO density (S=1 closed-shell total P, S=2 alpha/beta) -> [..., 2, N, N] complex, zero-padded."""
    d = torch.as_tensor(np.asarray(density)) if not torch.is_tensor(density) else density
    if not d.is_complex():
        d = d.to(torch.complex128)
    if d.shape[-3] == 1:
        d = torch.cat([0.5 * d, 0.5 * d], dim=-3)
    n = d.shape[-1]
    N = nbf_pad or n
    if N > n:
        d = torch.nn.functional.pad(d, (0, N - n, 0, N - n))
    return d
