"""The ERI Cholesky factor built column by column: every integral within its tolerance, J within tol·Σ|P| of
PySCF's exact J, and the [N², N²] supermatrix never requested from libcint."""

import numpy as np
import pytest
from pyscf import gto

from rtml.datasets import eri_cholesky as chol
from rtml.datasets.kohn_sham import coulomb
from rtml.datasets.molecules import CATALOG
from rtml.datasets.xc_kernel import unpack


@pytest.mark.parametrize("name,tol", [("h2o", 1e-8), ("ch4", 1e-6), ("nh3", 1e-11)])
def test_factor_reproduces_every_integral(name, tol, monkeypatch):
    mol = gto.M(atom=CATALOG[name].pyscf_atom(), basis="6-31g", verbose=0)
    n = mol.nao
    eri = mol.intor("int2e", aosym="s1").reshape(n * n, n * n)
    calls = []
    real = mol.intor

    def intor(name_, *a, shls_slice=None, **kw):
        calls.append(shls_slice)
        assert name_ != "int2e" or shls_slice is not None, "the whole ERI tensor was requested"
        return real(name_, *a, shls_slice=shls_slice, **kw)

    monkeypatch.setattr(mol, "intor", intor)
    monkeypatch.setattr(chol, "BLOCK", 16)  # several row blocks, also across a shell pair's pivots
    fac = chol.eri_cholesky(mol, tol)  # [Q, M] packed
    q = len(fac)
    assert q > 2 * chol.BLOCK and q < n * (n + 1) // 2
    full = unpack(fac, n).reshape(q, -1)  # [Q, N²]
    err = np.abs(eri - full.T @ full).max()
    assert err <= tol * 1.01, err
    # J of a density: within tol·Σ|P| (Cauchy–Schwarz)
    p = np.random.default_rng(0).standard_normal((n, n))
    p = p + p.T
    j_exact = np.einsum("mnkl,kl->mn", eri.reshape(n, n, n, n), p)
    assert np.abs(coulomb(fac, p) - j_exact).max() <= tol * np.abs(p).sum()
    assert len(calls) < mol.nbas * (mol.nbas + 1) // 2 + q  # one call per shell pair (diagonal) + per pivot block
