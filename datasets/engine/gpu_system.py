"""The reference engine's Fock builds on a CUDA GPU with gpu4pyscf (``SystemConfig.device='cuda'``).

Selected explicitly (``rtml generate --device cuda``), detected (:func:`cuda_status`), never a silent fallback: a
missing ``gpu4pyscf`` or a missing CUDA device is an :class:`EngineDeviceError` naming what is missing.

What runs where: the SCF and every V_eff / J build (the grid integration and the two-electron integrals: > 90 % of
a CPU step) run on the device through gpu4pyscf; the propagation algebra on the nbf x nbf matrices (a 66 x 66
eigendecomposition for C6H6, well under a millisecond) stays on the host, and each build moves two nbf x nbf
matrices across PCIe. The integrals that do not change (S, h, dipole) come from PySCF once.

Scope: pure functionals (LDA, GGA). Hybrids and HF need exact exchange of a *complex* density, which is not
validated against the CPU engine here; they are refused by name rather than run unchecked.
"""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
from pyscf import lib

from rtml.datasets.engine.system import ElectronicSystem, SystemConfig, set_grid
from rtml.datasets.errors import DataError, SCFConvergenceError
from rtml.datasets.molecules import Molecule


class EngineDeviceError(DataError):
    """The requested engine device cannot be used here."""


def cuda_status() -> tuple[bool, str]:
    """(usable, reason): gpu4pyscf importable and at least one CUDA device visible to CuPy."""
    if importlib.util.find_spec("gpu4pyscf") is None:
        return False, "gpu4pyscf is not installed (pip install 'rtml[gpu]', i.e. gpu4pyscf-cuda12x)"
    import cupy

    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError as exc:
        return False, f"no usable CUDA device ({exc})"
    return (n > 0, f"{n} CUDA device(s)") if n else (False, "no CUDA device visible")


class GpuElectronicSystem(ElectronicSystem):
    """:class:`ElectronicSystem` whose ``ground_state``/``veff``/``coulomb`` run in gpu4pyscf on the current device."""

    def __init__(self, molecule: Molecule, cfg: SystemConfig):
        ok, why = cuda_status()
        if not ok:
            raise EngineDeviceError("<engine config>", "system.device", "'cpu', or 'cuda' with gpu4pyscf and a "
                                    "CUDA GPU", f"'cuda': {why}")
        super().__init__(molecule, dataclasses.replace(cfg, device="cpu", ao_cache_mb=0.0))  # the host twin
        self.cfg = cfg
        if self.needs_complex:
            raise EngineDeviceError("<engine config>", "system.xc", "a pure functional (LDA/GGA) on device 'cuda' "
                                    "(exact exchange of a complex density is CPU-only)", cfg.xc)
        import cupy
        from gpu4pyscf.dft import rks, uks

        self.cp = cupy
        self.gpu_mf = (uks.UKS if self.open_shell else rks.RKS)(self.mol, xc=cfg.xc)
        self.gpu_mf.grids.level = cfg.grid_level
        if cfg.grid != "pyscf":
            set_grid(self.gpu_mf.grids, self.mol, cfg.grid)
        for k in ("conv_tol", "conv_tol_grad", "max_cycle"):
            setattr(self.gpu_mf, k, getattr(self.mf, k))

    def ground_state(self, guess: np.ndarray | None = None) -> np.ndarray:
        """The SCF on the device; the host twin is marked converged with the same density (for its energies)."""
        if guess is not None:
            guess = self.cp.asarray(np.asarray(guess).real)
        self.gpu_mf.kernel(dm0=guess)
        self.scf_cycles = int(getattr(self.gpu_mf, "cycles", -1))
        if not self.gpu_mf.converged:
            raise SCFConvergenceError(f"SCF (gpu4pyscf) did not converge for {self.molecule.name} ({self.cfg.basis}, "
                               f"{self.cfg.xc}) in {self.cfg.scf_max_cycle} cycles")
        dm = self.cp.asnumpy(self.gpu_mf.make_rdm1())
        return dm.reshape(self.n_spin, self.nbf, self.nbf).astype(np.complex128)

    def veff(self, p: np.ndarray):
        """V_eff of Re P on the device -> a host array tagged with ecoul/exc (what the host twin's energy reads)."""
        dm = (p if self.open_shell else p[0]).real
        v = self.gpu_mf.get_veff(self.mol, self.cp.asarray(dm), hermi=1)
        return lib.tag_array(self.cp.asnumpy(v), ecoul=float(v.ecoul), exc=float(v.exc), vj=None, vk=None)

    def coulomb(self, p_total: np.ndarray) -> np.ndarray:
        vj = self.gpu_mf.get_j(self.mol, self.cp.asarray(np.asarray(p_total).real), hermi=1)
        return self.cp.asnumpy(vj)
