"""The reference propagator against NWChem's real output, its own invariants and its failure modes."""

import numpy as np
import pytest
from conftest import FIXTURES

from rtml.datasets.engine.propagator import IntegratorConfig, expm_herm
from rtml.datasets.engine.run import EngineConfig, propagate
from rtml.datasets.engine.system import SystemConfig
from rtml.datasets.errors import DataError, PropagationError
from rtml.datasets.fields import FieldSpec, kick
from rtml.datasets.formats.nwchem import parse_timeseries, read_output, read_restart
from rtml.datasets.molecules import CATALOG


@pytest.fixture(scope="module")
def h2o_nwchem_kick():
    """Same input as the NWChem fixture: H2O/6-31G/SVWN5, delta kick max 0.01 along x, dt 0.2, t = 0..0.6."""
    cfg = EngineConfig(integrator=IntegratorConfig(sc_rtol=1e-8), n_steps=4)
    return propagate(CATALOG["h2o"], kick(0.01, (1, 0, 0)), cfg)


def test_dipole_matches_nwchem_output(h2o_nwchem_kick):
    ts = parse_timeseries((FIXTURES / "h2o_6-31g_lda_kick0.01_dens_timeseries.out").read_text())
    t_nw, mu_nw = ts["Dipole moment [system]"]
    np.testing.assert_allclose(h2o_nwchem_kick.time, t_nw, atol=1e-12)
    induced_nw = mu_nw[1:, 0] - mu_nw[0, 0]
    induced = h2o_nwchem_kick.dipole[1:, 0] - h2o_nwchem_kick.dipole[0, 0]
    assert np.max(np.abs(induced / induced_nw - 1)) < 1e-5  # measured 2.7e-6
    np.testing.assert_allclose(h2o_nwchem_kick.dipole[:, 2], mu_nw[:, 2], atol=2e-6)  # permanent dipole
    np.testing.assert_allclose(h2o_nwchem_kick.field[:, 0], [0.01, 0, 0, 0])


def test_complex_density_matches_nwchem_restart(h2o_nwchem_kick):
    run = read_output([FIXTURES / "h2o_6-31g_lda_scf_basis_trimmed.out",
                       FIXTURES / "h2o_6-31g_lda_rt_timeseries_trimmed.out"])
    t, p_nw = read_restart(FIXTURES / "h2o_6-31g_lda_kick0.01_t0.6.rt_restart", run.nw_to_pyscf_permutation())
    assert t == pytest.approx(0.6)
    p = h2o_nwchem_kick.density[3, 0]
    assert np.abs(p.real - p_nw[0].real).max() < 1e-6
    assert np.abs(p.imag - p_nw[0].imag).max() < 1e-6
    assert np.abs(p.imag).max() > 1e-4  # the comparison is not vacuous: the kick made P complex


def test_response_is_linear_in_weak_kicks():
    """Self-consistency tolerance scales with the perturbation: a 1e-5 kick is as accurate as a 1e-3 kick."""
    out = []
    for amp in (1e-5, 1e-3):
        tr = propagate(CATALOG["h2"], kick(amp, (0, 0, 1)), EngineConfig(n_steps=30))
        out.append((tr.dipole[:, 2] - tr.dipole[0, 2]) / amp)
    assert np.max(np.abs(out[0] - out[1])) < 1e-4 * np.max(np.abs(out[1]))


@pytest.mark.parametrize("xc", ["B3LYP", "HF", "PBE"])
def test_hybrid_gga_and_hf_propagate_with_complex_exchange(xc):
    tr = propagate(CATALOG["lih"], kick(1e-2, (1, 0, 1)), EngineConfig(system=SystemConfig(basis="sto-3g", xc=xc),
                                                                         n_steps=15))
    tr.validate()
    e = tr.energy[1:]
    assert np.abs(e - e[0]).max() < 1e-8  # field-free after the kick: energy conserved
    assert np.abs(tr.density[-1].imag).max() > 1e-5


def test_open_shell_uks(h2p_traj):
    assert h2p_traj.n_spin == 2 and h2p_traj.multiplicity == 2
    ne = np.einsum("tsij,ji->ts", h2p_traj.density, h2p_traj.overlap).real
    np.testing.assert_allclose(ne[:, 0], 1.0, atol=1e-10)
    np.testing.assert_allclose(ne[:, 1], 0.0, atol=1e-10)


def test_mmut_agrees_with_magnus_where_stable():
    cfg = {"system": SystemConfig(basis="sto-3g"), "n_steps": 60}
    a = propagate(CATALOG["h2"], kick(1e-3, (0, 0, 1)), EngineConfig(**cfg))
    b = propagate(CATALOG["h2"], kick(1e-3, (0, 0, 1)), EngineConfig(integrator=IntegratorConfig(integrator="mmut"),
                                                                        **cfg))
    da, db = a.dipole[:, 2] - a.dipole[0, 2], b.dipole[:, 2] - b.dipole[0, 2]
    # Magnus' grid kick is centred at dt/2, MMUT's unitary kick at 0: compare Magnus at t with MMUT at t - dt/2.
    assert np.abs(da[1:] - 0.5 * (db[1:] + db[:-1])).max() < 0.01 * np.abs(da).max()


def test_mmut_blow_up_is_detected_and_nothing_is_returned():
    """Plain MMUT grows its even/odd leapfrog mode for H2O/6-31G at dt = 0.2 (Magnus does not)."""
    cfg = EngineConfig(integrator=IntegratorConfig(integrator="mmut", max_energy_drift=1e-4), n_steps=1500)
    with pytest.raises(PropagationError, match="mmut blew up"):
        propagate(CATALOG["h2o"], kick(1e-3, (1, 0, 0)), cfg)


def test_expm_herm_is_unitary_and_exact():
    from scipy.linalg import expm

    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6)) + 1j * rng.normal(size=(6, 6))
    h = a + a.conj().T
    np.testing.assert_allclose(expm_herm(h, 0.3), expm(-0.3j * h), atol=1e-12)


def test_fields_and_bad_engine_config():
    spec = FieldSpec(kind="gaussian", amplitude=0.1, omega=0.3, sigma=5.0, t0=15.0, polarization=(0, 3, 4))
    e = spec.values(np.array([15.0]), 0.2)
    np.testing.assert_allclose(e[0], 0.1 * np.sin(4.5) * np.array([0, 0.6, 0.8]))
    with pytest.raises(DataError, match="kind"):
        FieldSpec(kind="laser")
    with pytest.raises(DataError, match="integrator"):
        propagate(CATALOG["h2"], kick(), EngineConfig(integrator=IntegratorConfig(integrator="rk4"), n_steps=3))


@pytest.mark.parametrize("name, xc, basis", [("h2o", "LDA,VWN", "6-31g"), ("h2p", "PBE", "sto-3g"),
                                             ("lih", "B3LYP", "6-31g")])
def test_ao_grid_cache_gives_identical_fock_builds_and_kernels(name, xc, basis):
    """The AO-on-grid cache replays PySCF's own blocks: V_eff (RKS/UKS, LDA/GGA/hybrid) and the xc kernel are the
    uncached ones to rounding (in practice bit-identical), on repeated builds."""
    from rtml.datasets.engine.system import ElectronicSystem
    from rtml.datasets.xc_kernel import xc_kernel

    cached, plain = (ElectronicSystem(CATALOG[name], SystemConfig(basis=basis, xc=xc, ao_cache_mb=mb))
                     for mb in (2048.0, 0.0))
    p0 = cached.ground_state()
    rng = np.random.default_rng(0)
    for _ in range(2):  # the second build replays the cache
        d = rng.normal(size=p0.shape) * 1e-3
        p = p0 + d + np.swapaxes(d, -1, -2)
        assert np.abs(np.asarray(cached.veff(p)) - np.asarray(plain.veff(p))).max() <= 1e-12
    assert cached.mf._numint._blocks  # the cache was used
    k_cached, k_plain = xc_kernel(cached, p0), xc_kernel(plain, p0)
    assert np.abs(k_cached.sym - k_plain.sym).max() <= 1e-12


@pytest.mark.parametrize("molecule,xc,basis", [("h2o", "B3LYP", "6-31g"), ("h2o", "HF", "6-31g"),
                                               ("h2p", "B3LYP", "sto-3g"), ("lih", "PBE0", "6-31g")])
def test_split_complex_exchange_is_pyscfs_complex_path(molecule, xc, basis):
    """V_eff[Re P] on real arrays plus the exchange of Im P (the default) = PySCF handed the complex P: the same
    operator and energy for a complex Hermitian density (closed and open shell, hybrid and HF)."""
    import dataclasses

    from rtml.datasets.engine.system import ElectronicSystem, SystemConfig

    split = ElectronicSystem(CATALOG[molecule], SystemConfig(xc=xc, basis=basis))
    whole = ElectronicSystem(CATALOG[molecule], dataclasses.replace(split.cfg, complex_exchange="pyscf"))
    p = split.ground_state()
    rng = np.random.default_rng(1)
    d = 1e-3 * (rng.normal(size=p.shape) + 1j * rng.normal(size=p.shape))
    p = p + d + np.conj(np.swapaxes(d, -1, -2))  # complex Hermitian, Im P antisymmetric and non-zero
    v_split, v_whole = split.veff(p), whole.veff(p)
    assert np.abs(np.asarray(v_whole).imag).max() > 1e-6  # the exchange of Im P is really there
    np.testing.assert_allclose(np.asarray(v_split), np.asarray(v_whole), rtol=0, atol=1e-12)
    assert abs(split.energy(p, v_split) - whole.energy(p, v_whole)) < 1e-11
