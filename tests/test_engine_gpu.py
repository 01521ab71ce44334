"""The GPU reference engine (gpu4pyscf, ``SystemConfig.device='cuda'``): explicit, detected, never a fallback."""

from __future__ import annotations

import numpy as np
import pytest

from rtml.cli.main import main
from rtml.datasets.engine.gpu_system import EngineDeviceError, cuda_status
from rtml.datasets.engine.run import EngineConfig, propagate
from rtml.datasets.engine.system import SystemConfig
from rtml.datasets.fields import kick
from rtml.datasets.molecules import CATALOG

CUDA, WHY = cuda_status()


@pytest.mark.skipif(CUDA, reason="CUDA is present: the refusal path does not apply")
def test_cuda_engine_is_refused_by_name_without_cuda(tmp_path, capsys):
    with pytest.raises(EngineDeviceError, match="system.device.*'cuda': (gpu4pyscf|no .*CUDA)"):
        propagate(CATALOG["h2"], kick(1e-3, (0, 0, 1)), EngineConfig(system=SystemConfig(device="cuda"), n_steps=3))
    assert main(["generate", "--out", str(tmp_path / "g.zarr"), "--molecules", "h2", "--n-geometries", "1",
                 "--fields", "kick", "--steps", "3", "--device", "cuda", "--executor", "serial"]) == 2
    assert "--device" in capsys.readouterr().err
    assert not (tmp_path / "g.zarr" / "index").exists()  # nothing was generated on the CPU instead


@pytest.mark.skipif(not CUDA, reason=f"needs CUDA + gpu4pyscf ({WHY})")
@pytest.mark.parametrize("molecule,xc", [("h2o", "LDA,VWN"), ("h2p", "PBE")])
def test_gpu_engine_matches_cpu_engine(molecule, xc):
    """Same molecule, field, grid and integrator: the device's trajectory is the CPU engine's to the precision of
    the Fock builds (the grids are built by two codes: ~1e-9 of the induced dipole)."""
    runs = {d: propagate(CATALOG[molecule], kick(1e-3, (1, 1, 1)),
                         EngineConfig(system=SystemConfig(xc=xc, device=d, basis="6-31g"), n_steps=40))
            for d in ("cpu", "cuda")}
    cpu, gpu = runs["cpu"], runs["cuda"]
    induced = np.abs(cpu.dipole - cpu.dipole[0]).max()
    assert np.abs(gpu.dipole - cpu.dipole).max() < 1e-6 * induced
    assert np.abs(gpu.density - cpu.density).max() < 1e-7
    assert gpu.meta["system"]["device"] == "cuda"


@pytest.mark.skipif(not CUDA, reason=f"needs CUDA + gpu4pyscf ({WHY})")
def test_gpu_engine_refuses_hybrids():
    with pytest.raises(EngineDeviceError, match="pure functional"):
        propagate(CATALOG["h2o"], kick(1e-3, (0, 0, 1)), EngineConfig(system=SystemConfig(xc="B3LYP", device="cuda"),
                                                                      n_steps=3))


@pytest.mark.integration
@pytest.mark.skipif(CUDA, reason="CUDA is present: the refusal path does not apply")
@pytest.mark.usefixtures("local_ray")
def test_generate_on_a_ray_cluster_without_gpus_is_refused_before_the_store(tmp_path, capsys):
    out = tmp_path / "r.zarr"
    assert main(["generate", "--out", str(out), "--molecules", "h2", "--n-geometries", "1", "--fields", "kick",
                 "--steps", "3", "--device", "cuda", "--executor", "ray"]) == 2
    assert "cluster with GPUs" in capsys.readouterr().err and not out.exists()
