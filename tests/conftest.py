"""Shared fixtures: small reference trajectories generated once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtml.datasets.engine.run import EngineConfig, propagate
from rtml.datasets.engine.system import SystemConfig
from rtml.datasets.fields import FieldSpec, kick
from rtml.datasets.molecules import CATALOG, sample_geometry

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def h2_traj():
    """H2 / 6-31G / LDA, Gaussian pulse, 40 steps."""
    spec = FieldSpec(kind="gaussian", amplitude=0.02, omega=0.5, sigma=2.0, t0=4.0, polarization=(0.3, 0.2, 1.0))
    return propagate(CATALOG["h2"], spec, EngineConfig(n_steps=40))


@pytest.fixture(scope="session")
def h2o_traj():
    """H2O / 6-31G / LDA at a sampled (rotated, stretched) geometry, kick, 20 steps."""
    mol = sample_geometry(CATALOG["h2o"], 1, seed=0)
    return propagate(mol, kick(1e-2, (1.0, 1.0, 0.0)), EngineConfig(n_steps=20))


@pytest.fixture(scope="session")
def h2p_traj():
    """H2+ doublet / STO-3G / UKS LDA, kick, 20 steps (open shell, n_spin = 2)."""
    return propagate(CATALOG["h2p"], kick(1e-2, (0, 0, 1)),
                     EngineConfig(system=SystemConfig(basis="sto-3g"), n_steps=20))


@pytest.fixture(scope="session")
def small_store(tmp_path_factory):
    """A tiny training store: H2 and LiH, 2 geometries, kick + pulse, 40 frames (serial engine, ~20 s)."""
    from rtml.datasets.generate import GenerateConfig, generate

    path = str(tmp_path_factory.mktemp("stores") / "train.zarr")
    generate(GenerateConfig(out=path, molecules=["h2", "lih"], n_geometries=2, steps=40, executor="serial",
                            progress=False))
    return path


@pytest.fixture(scope="session")
def heldout_store(tmp_path_factory):
    """Held-out store: other geometries (not the catalog one) and fields (seed 1), one geometry per molecule."""
    from rtml.datasets.generate import GenerateConfig, generate

    path = str(tmp_path_factory.mktemp("stores") / "heldout.zarr")
    generate(GenerateConfig(out=path, molecules=["h2", "lih"], n_geometries=1, first_geometry=1, steps=40, seed=1,
                            executor="serial", progress=False))
    return path


@pytest.fixture(scope="module")
def local_ray():
    """A local 2-CPU Ray for the tests of one module (use with ``pytest.mark.usefixtures("local_ray")``)."""
    import os

    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield
    ray.shutdown()



@pytest.fixture(autouse=True)
def _unit_tests_do_not_start_ray(request, monkeypatch):
    """A test not marked ``integration`` or ``slow`` that starts Ray fails and says so: the unit suite stays fast."""
    if request.node.get_closest_marker("integration") or request.node.get_closest_marker("slow"):
        return
    import ray

    def refuse(*args, **kwargs):
        raise RuntimeError(f"{request.node.nodeid} started Ray: mark it @pytest.mark.integration")

    monkeypatch.setattr(ray, "init", refuse)
