"""PySCF's numerical integrator with the atomic-orbital values on the DFT grid cached per molecule.

The geometry is fixed for a whole trajectory, yet every Fock build re-evaluates every AO (and its derivatives for
GGAs) on every grid point. :class:`CachedNumInt` keeps the blocks PySCF's own ``NumInt.block_loop`` yields (AO
values, screening mask, weights, coordinates — the same blocks in the same order) and hands them out again, so
every PySCF routine that loops over the grid (``nr_rks``/``nr_uks`` in a Fock build, ``nr_rks_fxc`` for the xc
kernel) computes the same results (bit-identical where PySCF's blocking is the same), only faster
(``benchmarks/bench_engine.py``: ms/step with and without the cache, and the largest difference).

Memory: ngrids × nao × (1 for LDA, 4 for GGA) float64 — ~76 MB for C6H6/6-31G LDA at grid level 3. Above
``max_mb`` a loop is not cached (same results, PySCF's speed). Not thread-safe (one trajectory per process).
"""

from __future__ import annotations

from pyscf.dft import numint


class CachedNumInt(numint.NumInt):
    """``NumInt`` whose ``block_loop`` replays cached AO blocks (module docstring); ``max_mb`` caps one cache entry."""

    def __init__(self, max_mb: float = 2048.0):
        super().__init__()
        self.max_mb = max_mb
        self._blocks: dict = {}

    def block_loop(self, mol, grids, nao=None, deriv=0, max_memory=2000, non0tab=None, blksize=None, buf=None):
        if grids.coords is None:
            grids.build(with_non0tab=True)
        comp = (deriv + 1) * (deriv + 2) * (deriv + 3) // 6
        size_mb = grids.coords.shape[0] * (nao or mol.nao) * comp * 8 / 1e6
        if non0tab is not None or mol is not grids.mol or size_mb > self.max_mb:
            yield from super().block_loop(mol, grids, nao, deriv, max_memory, non0tab, blksize, buf)
            return
        # grids.coords identifies the grid (a rebuilt grid is a new array). PySCF passes max_memory = what is free
        # at the call, which moves from call to call; the blocks of the first call are kept (a different blocking
        # changes sums over blocks by rounding only).
        key = (id(mol), id(grids.coords), nao, deriv, blksize)
        if key not in self._blocks:
            # PySCF reuses one buffer for all blocks: keep copies, in PySCF's memory layout (F-ordered AO blocks)
            self._blocks[key] = [(ao.copy(order="K"), mask, weight, coords) for ao, mask, weight, coords in
                                 super().block_loop(mol, grids, nao, deriv, max_memory, None, blksize, None)]
        yield from self._blocks[key]
