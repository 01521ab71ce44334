"""Pivoted Cholesky factor of the electron-repulsion integrals, computed column by column from integral rows.

    (mn|kl) ≈ Σ_Q L_Q,mn L_Q,kl,      max_mn |(mn|mn) − Σ_Q L_Q,mn²| ≤ tol

held in pair coordinates (m ≤ n: M = N(N+1)/2 numbers per vector, half of N²).

The [N², N²] ERI supermatrix is never formed: the diagonal (mn|mn) comes from one small integral call per shell
pair, and each pivot's columns (mn|KL) for all mn from one ``int2e`` call over the pivot shell pair (K, L) —
Koch, Sánchez de Merás & Pedersen, J. Chem. Phys. 118, 9481 (2003); Aquilante et al. (2011). Memory is the factor,
Q·M float64 (Q grows linearly with N at a fixed tolerance: 84 vectors for H2O/6-31G, 760 for C6H6, 2247 for
tetracene), plus one shell pair's columns and one block of rows; cost Q·M per column update and the integral rows
of ~Q/(shell-pair size) pivot shell pairs.

By Cauchy–Schwarz every reconstructed integral is within ``tol`` of the exact one, so J[P] is within
tol·Σ_kl|P_kl| of PySCF's exact J (tested in ``tests/test_eri_cholesky.py``).
"""

from __future__ import annotations

import numpy as np

from rtml.datasets.xc_kernel import pairs

TOL = 1e-8  # Hartree: the largest residual diagonal (mn|mn) left out
BLOCK = 128  # factor rows per allocation


def eri_diagonal(mol) -> np.ndarray:
    """(mn|mn) [N, N] float64, one ``int2e`` call per shell pair (I ≥ J)."""
    loc = mol.ao_loc_nr()
    n = loc[-1]
    out = np.zeros((n, n))
    for i in range(mol.nbas):
        for j in range(i + 1):
            blk = mol.intor("int2e", shls_slice=(i, i + 1, j, j + 1, i, i + 1, j, j + 1))  # [di, dj, di, dj]
            di, dj = blk.shape[:2]
            d = np.einsum("abab->ab", blk)
            out[loc[i]:loc[i] + di, loc[j]:loc[j] + dj] = d
            out[loc[j]:loc[j] + dj, loc[i]:loc[i] + di] = d.T
    return out


def eri_cholesky(mol, tol: float = TOL, progress=None) -> np.ndarray:
    """[Q, M] float64 factor of the ERIs of a PySCF ``Mole`` in pair coordinates (module docstring): row Q holds
    L_Q,mn for m ≤ n (``rtml.datasets.xc_kernel.pack`` order; the ERIs are symmetric in m ↔ n).

    ``progress``: optional callable(q, residual) called after each pivot shell pair."""
    loc = mol.ao_loc_nr()
    n = int(loc[-1])
    i0, i1, _, _, _ = pairs(n)
    pair_of = np.zeros((n, n), np.int64)  # [N, N] pair index of (m, n) and (n, m)
    pair_of[i0, i1] = pair_of[i1, i0] = np.arange(len(i0))
    rows = i0 * n + i1  # [M] flat index of each pair
    shell_of = np.repeat(np.arange(mol.nbas), np.diff(loc))  # [N] shell of each AO
    diag = eri_diagonal(mol)[i0, i1]  # [M] residual diagonal
    blocks: list[np.ndarray] = []  # [BLOCK, M] each: rows appended without ever copying the factor
    q = 0
    while True:
        top = int(np.argmax(diag))
        dmax = float(diag[top])
        if dmax <= tol:
            break
        ki, li = shell_of[i0[top]], shell_of[i1[top]]
        cols = mol.intor("int2e", shls_slice=(0, mol.nbas, 0, mol.nbas, ki, ki + 1, li, li + 1))  # [N, N, dk, dl]
        k_idx = np.arange(loc[ki], loc[ki + 1])
        l_idx = np.arange(loc[li], loc[li + 1])
        piv, first = np.unique(pair_of[k_idx[:, None], l_idx[None, :]].reshape(-1), return_index=True)
        cols = cols.reshape(n * n, -1)[rows][:, first]  # [M, p]: the shell pair's distinct pair columns
        for b, blk in enumerate(blocks):  # residual columns: minus what the factor so far explains
            done = blk[:min(BLOCK, q - b * BLOCK)]
            cols -= done.T @ done[:, piv]
        # pivots inside the block: largest residual diagonal first, while it is a sizeable part of dmax
        floor = max(tol, 1e-2 * dmax)
        while True:
            j = int(np.argmax(diag[piv]))
            dj = float(diag[piv[j]])
            if dj <= floor:
                break
            v = cols[:, j] / np.sqrt(dj)  # [M]
            if q == BLOCK * len(blocks):
                blocks.append(np.empty((BLOCK, len(i0))))
            blocks[-1][q % BLOCK] = v
            q += 1
            diag -= v * v
            cols -= np.outer(v, v[piv])
            diag[piv[j]] = 0.0  # exactly: rounding may leave ±1e-16
        if progress is not None:
            progress(q, float(diag.max()))
    out = np.empty((q, len(i0)))
    for b in range(len(blocks)):  # block by block, each freed once copied: peak = factor + one block
        m = min(BLOCK, q - b * BLOCK)
        out[b * BLOCK:b * BLOCK + m] = blocks[b][:m]
        blocks[b] = None
    return out
