"""Spectra, peaks and comparison metrics on synthetic signals with known answers."""

import numpy as np
import pytest

from rtml.datasets.observables import (
    HARTREE_EV,
    absorption_spectrum,
    dipole_from_density,
    dipole_nrmse,
    find_peaks,
    scaled_l2,
    spectrum_nrmse,
    spectrum_overlap,
)


@pytest.mark.parametrize("window", ["exp", "gauss"])
def test_spectrum_of_known_oscillators(window):
    t = np.arange(0, 1500, 0.2)
    w0, w1 = 0.40, 0.55  # Ha
    kappa = 1e-3
    mu = np.zeros((len(t), 3))
    mu[:, 1] = kappa * (0.3 * np.sin(w0 * t) + 0.1 * np.sin(w1 * t))  # alpha'' lines with strengths 0.3, 0.1
    w, _s, im = absorption_spectrum(t, mu, kappa, direction=(0, 1, 0), window=window, damping=0.004,
                                   n_omega=20000, return_alpha=True)
    peaks = find_peaks(w, im, 0.1)
    np.testing.assert_allclose(peaks, [w0, w1], atol=2e-4 / HARTREE_EV * 10)
    # TRK-like check: integral of Im alpha over the line = (pi/2) * amplitude.
    band = w < 0.475
    assert np.trapezoid(im[band], w[band]) == pytest.approx(np.pi / 2 * 0.3, rel=0.02)


def test_metrics_are_zero_at_target_and_one_for_trivial_dipole():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(10, 1, 4, 4)) + 1j * rng.normal(size=(10, 1, 4, 4))
    assert scaled_l2(ref, ref) == 0.0 and scaled_l2(ref * 1.1, ref) == pytest.approx(0.1)
    mu = np.cumsum(rng.normal(size=(50, 3)), 0)
    assert dipole_nrmse(mu, mu) == 0.0
    assert dipole_nrmse(np.repeat(mu[:1], 50, 0), mu) == pytest.approx(1.0)
    w = np.linspace(0, 1, 200)
    s = np.exp(-((w - 0.4) / 0.02) ** 2)
    assert spectrum_nrmse(w, s, s) == 0.0 and spectrum_overlap(w, s, s) == pytest.approx(1.0)
    assert spectrum_overlap(w, np.roll(s, 30), s) < 0.5


def test_dipole_from_density_matches_engine(h2o_traj):
    from rtml.datasets.engine.system import ElectronicSystem, SystemConfig
    from rtml.datasets.molecules import Molecule

    mol = Molecule(name="h2o", symbols=("O", "H", "H"), positions=h2o_traj.positions)
    sysm = ElectronicSystem(mol, SystemConfig())
    mu = dipole_from_density(h2o_traj.density, sysm.r_ints, sysm.nuclear_dipole)
    np.testing.assert_allclose(mu, h2o_traj.dipole, atol=1e-12)
