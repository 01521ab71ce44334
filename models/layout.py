"""Shell and shell-pair index tables for a padded batch of molecules with different basis sets.

A density (or Hamiltonian) matrix of a batch, ``[*, B, N, N]``, is cut into shell-pair blocks. Pairs are grouped by
(l1, l2) so every group is one gather + one einsum with the group's Clebsch-Gordan basis: a block of shells with
angular momenta l1, l2 becomes the irreps ``|l1-l2| .. l1+l2`` (``rtml.models.irreps``). Every AO pair (i, j) of a
molecule lies in exactly one shell pair, so scattering the blocks back rebuilds the matrix exactly. Built once per
batch of molecules (it depends only on the basis metadata) on the CPU, then moved to the model's device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from e3nn import o3

from rtml.datasets.basis import shells_from_lm
from rtml.models.inputs import MoleculeBatch
from rtml.models.irreps import block_basis, block_irreps, pyscf_to_e3nn

MAX_SHELL_RANK = 8  # k-th shell of the same l on an atom (1s, 2s, 3s ... -> 0, 1, 2); larger k share the last index


@dataclass(kw_only=True)
class PairGroup:
    l1: int
    l2: int
    irreps: o3.Irreps  # block irreps, e.g. 1x0e+1x1e+1x2e for p-p
    basis: torch.Tensor  # [2l1+1, 2l2+1, D] orthonormal CG basis
    flat: torch.Tensor  # [P, d1, d2] int64 index into a flattened [B*N*N] matrix
    shell1: torch.Tensor  # [P] int64 global shell index
    shell2: torch.Tensor  # [P]
    atom1: torch.Tensor  # [P] int64 index into the flattened [B*A] atoms
    atom2: torch.Tensor  # [P]
    onsite: torch.Tensor  # [P] bool

    @property
    def n_pairs(self) -> int:
        return int(self.flat.shape[0])

    def slices(self) -> list[tuple[int, str, slice]]:
        """(L, parity, slice into the D axis) of each irrep of the block."""
        out, i = [], 0
        for mul_ir in self.irreps:
            d = mul_ir.ir.dim
            out.append((mul_ir.ir.l, "e" if mul_ir.ir.p == 1 else "o", slice(i, i + d)))
            i += d
        return out


@dataclass(kw_only=True)
class BasisLayout:
    B: int
    N: int
    A: int
    shell_atom: torch.Tensor  # [S] int64 flattened atom index b*A + a
    shell_z: torch.Tensor  # [S] int64
    shell_l: torch.Tensor  # [S] int64
    shell_rank: torch.Tensor  # [S] int64
    to_e3nn: torch.Tensor  # [B, N, N] real orthogonal: M_e3nn = T M T^T (identity on padding)
    groups: list[PairGroup]

    def gather(self, mat: torch.Tensor, g: PairGroup) -> torch.Tensor:
        """[*, B, N, N] -> blocks [*, P, d1, d2]."""
        lead = mat.shape[:-3]
        return mat.reshape(*lead, -1)[..., g.flat.reshape(-1)].reshape(*lead, *g.flat.shape)

    def scatter(self, blocks: list[torch.Tensor]) -> torch.Tensor:
        """Blocks [*, P_g, d1, d2] of every group (same order as ``groups``) -> matrix [*, B, N, N]."""
        lead = blocks[0].shape[:-3]
        vals = torch.cat([b.reshape(*lead, -1) for b in blocks], dim=-1)
        idx = torch.cat([g.flat.reshape(-1) for g in self.groups])
        out = vals.new_zeros(*lead, self.B * self.N * self.N)
        return out.index_add(-1, idx, vals).reshape(*lead, self.B, self.N, self.N)

    def to(self, device=None, dtype=None) -> BasisLayout:
        def mv(t):
            return t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device=device)
        groups = [PairGroup(l1=g.l1, l2=g.l2, irreps=g.irreps, basis=mv(g.basis), flat=mv(g.flat),
                            shell1=mv(g.shell1), shell2=mv(g.shell2), atom1=mv(g.atom1), atom2=mv(g.atom2),
                            onsite=mv(g.onsite)) for g in self.groups]
        return BasisLayout(B=self.B, N=self.N, A=self.A, shell_atom=mv(self.shell_atom), shell_z=mv(self.shell_z),
                           shell_l=mv(self.shell_l), shell_rank=mv(self.shell_rank), to_e3nn=mv(self.to_e3nn),
                           groups=groups)


def build_layout(mol: MoleculeBatch, dtype=torch.float64) -> BasisLayout:
    B, N, A = mol.batch_size, mol.nbf, int(mol.atomic_numbers.shape[1])
    bmask, batom = mol.basis_mask.cpu().numpy(), mol.basis_atom.cpu().numpy()
    bl, bm, z = mol.basis_l.cpu().numpy(), mol.basis_m.cpu().numpy(), mol.atomic_numbers.cpu().numpy()
    s_b, s_atom, s_l, s_start, s_rank, s_z = [], [], [], [], [], []
    T = torch.eye(N, dtype=dtype).repeat(B, 1, 1)
    for b in range(B):
        n = int(bmask[b].sum())
        if not bmask[b, :n].all():
            raise ValueError(f"basis_mask of molecule {b}: expected the first {n} functions valid, padding last")
        shell = shells_from_lm(batom[b, :n], bl[b, :n], bm[b, :n])
        counts: dict[tuple[int, int], int] = {}
        for s in range(int(shell.max()) + 1 if n else 0):
            i0 = int(np.flatnonzero(shell == s)[0])
            a, lval = int(batom[b, i0]), int(bl[b, i0])
            if int((shell == s).sum()) != 2 * lval + 1:
                raise ValueError(f"molecule {b}, shell {s}: expected {2 * lval + 1} functions for l={lval}")
            k = counts.get((a, lval), 0)
            counts[(a, lval)] = k + 1
            s_b.append(b); s_atom.append(b * A + a); s_l.append(lval); s_start.append(i0)
            s_rank.append(min(k, MAX_SHELL_RANK - 1)); s_z.append(int(z[b, a]))
            T[b, i0:i0 + 2 * lval + 1, i0:i0 + 2 * lval + 1] = pyscf_to_e3nn(lval, dtype)
    s_b, s_atom, s_l, s_start = map(np.asarray, (s_b, s_atom, s_l, s_start))
    groups = []
    by_mol = [np.flatnonzero(s_b == b) for b in range(B)]
    pairs = np.concatenate([np.stack(np.meshgrid(ix, ix, indexing="ij"), -1).reshape(-1, 2) for ix in by_mol]) \
        if len(s_b) else np.zeros((0, 2), np.int64)
    for l1 in sorted(set(s_l.tolist())):
        for l2 in sorted(set(s_l.tolist())):
            sel = pairs[(s_l[pairs[:, 0]] == l1) & (s_l[pairs[:, 1]] == l2)]
            if not len(sel):
                continue
            p1, p2 = sel[:, 0], sel[:, 1]
            b = s_b[p1]
            i = s_start[p1][:, None, None] + np.arange(2 * l1 + 1)[None, :, None]
            j = s_start[p2][:, None, None] + np.arange(2 * l2 + 1)[None, None, :]
            flat = (b[:, None, None] * N + i) * N + j  # [P, d1, d2]
            groups.append(PairGroup(
                l1=l1, l2=l2, irreps=block_irreps(l1, l2), basis=block_basis(l1, l2, dtype),
                flat=torch.from_numpy(flat.astype(np.int64)), shell1=torch.from_numpy(p1.astype(np.int64)),
                shell2=torch.from_numpy(p2.astype(np.int64)), atom1=torch.from_numpy(s_atom[p1].astype(np.int64)),
                atom2=torch.from_numpy(s_atom[p2].astype(np.int64)),
                onsite=torch.from_numpy(s_atom[p1] == s_atom[p2])))
    return BasisLayout(B=B, N=N, A=A, shell_atom=torch.from_numpy(s_atom.astype(np.int64)),
                       shell_z=torch.as_tensor(s_z, dtype=torch.long), shell_l=torch.from_numpy(s_l.astype(np.int64)),
                       shell_rank=torch.as_tensor(s_rank, dtype=torch.long), to_e3nn=T, groups=groups)
