"""The engine's system for a device: :class:`~rtml.datasets.engine.system.ElectronicSystem` (CPU, PySCF) or
:class:`~rtml.datasets.engine.gpu_system.GpuElectronicSystem` (CUDA, gpu4pyscf)."""

from __future__ import annotations

from rtml.datasets.engine.gpu_system import GpuElectronicSystem
from rtml.datasets.engine.system import ElectronicSystem, SystemConfig
from rtml.datasets.molecules import Molecule


def make_system(molecule: Molecule, cfg: SystemConfig) -> ElectronicSystem:
    """The engine's system for ``cfg.device``: this module's (CPU, PySCF) or gpu4pyscf's (CUDA)."""
    if cfg.device == "cuda":
        return GpuElectronicSystem(molecule, cfg)
    if cfg.device != "cpu":
        raise ValueError(f"SystemConfig.device: expected 'cpu' or 'cuda', got {cfg.device!r}")
    return ElectronicSystem(molecule, cfg)
