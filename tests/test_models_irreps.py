"""PySCF <-> e3nn conventions and the block irreps maps, checked against PySCF integrals of rotated molecules."""

import numpy as np
import pytest
import torch
from model_inputs import pyscf_mol

from rtml.datasets.basis import basis_info_from_mol
from rtml.models.equivariance import random_rotation
from rtml.models.irreps import ao_rotation, block_basis, pyscf_to_e3nn, shell_l_of, wigner_d


@pytest.mark.parametrize("l", [0, 1, 2, 3])
def test_pyscf_to_e3nn_is_orthogonal(l):
    q = pyscf_to_e3nn(l)
    assert torch.allclose(q @ q.T, torch.eye(2 * l + 1, dtype=q.dtype), atol=1e-12)
    if l == 1:  # e3nn 0.6 orders l=1 as (x, y, z), like PySCF's p shells
        assert torch.allclose(q, torch.eye(3, dtype=q.dtype))


def test_ao_rotation_matches_pyscf_integrals_of_rotated_molecule():
    """Overlap, kinetic, nuclear attraction and dipole integrals (s, p, d, f shells) rotate as W M W^T."""
    R = random_rotation(3)
    m, mol = pyscf_mol("h2o", "cc-pvtz")
    _, mol_r = pyscf_mol("h2o", "cc-pvtz", positions=m.positions @ R.numpy().T)
    info = basis_info_from_mol(mol)
    W = ao_rotation(R, shell_l_of(info.l, info.m, info.atom_index)).numpy()
    assert {int(v) for v in info.l} == {0, 1, 2, 3}
    for name in ("int1e_ovlp", "int1e_kin", "int1e_nuc"):
        a, b = mol.intor(name), mol_r.intor(name)
        assert np.abs(W @ a @ W.T - b).max() < 1e-10, name
    r, r_rot = mol.intor("int1e_r"), mol_r.intor("int1e_r")  # vector operator: also rotate the component
    expect = np.einsum("xy,yij->xij", R.numpy(), W @ r @ W.T)
    assert np.abs(expect - r_rot).max() < 1e-10


@pytest.mark.parametrize("l1,l2", [(0, 1), (1, 1), (1, 2), (2, 2)])
def test_block_basis_orthonormal_and_equivariant(l1, l2):
    c = block_basis(l1, l2)  # [d1, d2, D]
    flat = c.reshape(-1, c.shape[-1])
    assert torch.allclose(flat.T @ flat, torch.eye(flat.shape[1], dtype=c.dtype), atol=1e-12)
    R = random_rotation(5)
    M = torch.randn(2 * l1 + 1, 2 * l2 + 1, dtype=torch.float64)
    x = torch.einsum("ij,ijk->k", M, c)
    x_rot = torch.einsum("ij,ijk->k", wigner_d(l1, R) @ M @ wigner_d(l2, R).T, c)
    D = torch.block_diag(*[wigner_d(L, R) for L in range(abs(l1 - l2), l1 + l2 + 1)])
    assert (D @ x - x_rot).abs().max() < 1e-12
    assert torch.allclose(torch.einsum("k,ijk->ij", x, c), M, atol=1e-12)
