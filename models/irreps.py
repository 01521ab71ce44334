"""Irreps bookkeeping shared by the model: PySCF real AOs <-> e3nn irreps, Clebsch-Gordan block bases, Wigner-D.

Conventions
-----------
* e3nn 0.6 orders the l = 1 irrep as (x, y, z) — the same as PySCF's p shells — but uses y as the polar axis for
  l >= 2, so PySCF's real solid harmonics of a d (f) shell are an orthogonal *mix* of e3nn's components, not a
  permutation. :func:`pyscf_to_e3nn` measures that map numerically (AO values on sphere points, least squares):
  ``phi_pyscf(r) = Y_e3nn(r) @ Q_l`` so a coefficient vector maps as ``c_e3nn = Q_l @ c_pyscf`` and a matrix block
  as ``M_e3nn = Q_l1 @ M_pyscf @ Q_l2.T``.
* A rotation R of the molecule acts on an AO-basis matrix as ``M -> W M W^T`` with ``W = blockdiag(Q_l^T D_l(R) Q_l)``
  per shell (:func:`ao_rotation`); ``tests/test_models_equivariance.py`` checks this against PySCF SCF densities of
  rotated molecules.
* A block between shells l1, l2 (shape [2l1+1, 2l2+1]) transforms as ``D_l1 M D_l2^T``; :func:`block_basis` gives the
  orthonormal change of basis to the irreps ``L = |l1-l2| .. l1+l2`` with parity ``(-1)^(l1+l2)``.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from e3nn import o3

from rtml.datasets.basis import shells_from_lm


@functools.cache
def _pyscf_to_e3nn_np(l: int) -> np.ndarray:
    if l < 0 or l > 4:
        raise ValueError(f"angular momentum l={l}: rtml supports shells with 0 <= l <= 4")
    rng = np.random.default_rng(1234)
    pts = rng.normal(size=(64 + 16 * l, 3))
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    mol = _one_shell_mol(l)
    ao = mol.eval_gto("GTOval_sph", pts)  # [n, 2l+1] radial * S_lm
    y = o3.spherical_harmonics(l, torch.from_numpy(pts), normalize=True, normalization="norm").numpy()
    q, *_ = np.linalg.lstsq(y, ao, rcond=None)  # ao = y @ q
    q /= np.sqrt(np.mean(np.sum(q * q, axis=0)))  # remove the common radial/normalisation factor
    if np.abs(q.T @ q - np.eye(2 * l + 1)).max() > 1e-8 or np.abs(y @ q - ao / np.linalg.norm(ao) *
                                                                  np.linalg.norm(y @ q)).max() > 1e-8:
        raise RuntimeError(f"PySCF l={l} functions are not an orthogonal transform of e3nn's (convention change?)")
    return np.where(np.abs(q) < 1e-12, 0.0, q)


def _one_shell_mol(l: int):
    from pyscf import gto

    mol = gto.Mole()
    mol.atom = "He 0 0 0"
    mol.basis = {"He": [[l, [1.0, 1.0]]]}
    mol.verbose = 0
    mol.build()
    return mol


def pyscf_to_e3nn(l: int, dtype=torch.float64) -> torch.Tensor:
    """Q_l [2l+1, 2l+1] orthogonal: ``c_e3nn = Q_l @ c_pyscf`` for the functions of one shell."""
    return torch.as_tensor(_pyscf_to_e3nn_np(int(l)), dtype=dtype)


@functools.cache
def _block_basis_np(l1: int, l2: int) -> np.ndarray:
    mats = [o3.wigner_3j(l1, l2, L, dtype=torch.float64).numpy() * np.sqrt(2 * L + 1)
            for L in range(abs(l1 - l2), l1 + l2 + 1)]
    return np.concatenate(mats, axis=-1)  # [2l1+1, 2l2+1, (2l1+1)(2l2+1)]


def block_basis(l1: int, l2: int, dtype=torch.float64) -> torch.Tensor:
    """C [2l1+1, 2l2+1, D] orthonormal: irreps ``x = einsum('ij,ijk->k', M, C)``, inverse ``M = einsum('k,ijk->ij')``."""
    return torch.as_tensor(_block_basis_np(int(l1), int(l2)), dtype=dtype)


def block_irreps(l1: int, l2: int) -> o3.Irreps:
    """Irreps of a shell-pair block: ``L = |l1-l2| .. l1+l2``, each once, parity ``(-1)^(l1+l2)``."""
    p = "e" if (l1 + l2) % 2 == 0 else "o"
    return o3.Irreps("+".join(f"1x{L}{p}" for L in range(abs(l1 - l2), l1 + l2 + 1)))


def wigner_d(l: int, R: torch.Tensor) -> torch.Tensor:
    """Real Wigner-D [2l+1, 2l+1] of a proper rotation R in e3nn's basis, accurate to rounding.

    e3nn's ``D_from_matrix`` goes through Euler angles (acos) and loses ~1e-8 near gimbal lock; here D is solved
    from Y(R x) = D Y(x) on fixed sphere points (least squares, exact for this linear relation)."""
    if l == 0:
        return torch.ones(1, 1, dtype=R.dtype)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(4 * (2 * l + 1), 3, generator=g, dtype=R.dtype)
    y = o3.spherical_harmonics(l, x, normalize=True, normalization="norm")  # [n, 2l+1]
    y_rot = o3.spherical_harmonics(l, x @ R.T, normalize=True, normalization="norm")
    return torch.linalg.lstsq(y, y_rot).solution.T  # y_rot = y @ D^T


def irreps_rotation(irreps: o3.Irreps | str, R: torch.Tensor) -> torch.Tensor:
    """Block-diagonal D [dim, dim] acting on features of ``irreps`` (proper rotations: parity plays no role)."""
    return torch.block_diag(*[wigner_d(ir.l, R) for mul, ir in o3.Irreps(irreps) for _ in range(mul)])


def ao_rotation(R: torch.Tensor, shell_l: list[int] | np.ndarray) -> torch.Tensor:
    """W [nbf, nbf] with ``M_rot = W @ M @ W.T`` for an AO matrix of a molecule rotated by R (positions r -> R r)."""
    blocks = []
    for l in shell_l:
        q = pyscf_to_e3nn(int(l), R.dtype)
        d = wigner_d(int(l), R)  # [2l+1, 2l+1]
        blocks.append(q.T @ d @ q)
    return torch.block_diag(*blocks)


def shell_l_of(basis_l: np.ndarray, basis_m: np.ndarray, basis_atom: np.ndarray) -> np.ndarray:
    """Angular momentum of each shell (PySCF order) from per-AO metadata."""

    shell = shells_from_lm(np.asarray(basis_atom), np.asarray(basis_l), np.asarray(basis_m))
    first = np.r_[0, np.flatnonzero(np.diff(shell)) + 1]
    return np.asarray(basis_l)[first]
