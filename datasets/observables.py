"""Observables and comparison metrics on trajectories (atomic units unless stated; 1 Ha = 27.211386 eV).

* :func:`dipole_from_density` — total dipole from rho and the AO dipole integrals.
* :func:`absorption_spectrum` — dipole strength function S(w) = (2 w / pi) Im alpha(w) from a kicked run, with
  alpha(w) = FT[mu(t) - mu(0)] / kappa, exponential damping exp(-gamma t) and evaluation on an arbitrary (fine)
  frequency grid (a zero-padded Fourier transform).
* :func:`find_peaks` — local maxima of a spectrum above a fraction of its maximum, refined by a parabola.
* metrics used to compare a prediction with a reference: :func:`scaled_l2`, :func:`dipole_nrmse`,
  :func:`spectrum_nrmse` (below 20 eV), :func:`spectrum_overlap`.
"""

from __future__ import annotations

import numpy as np

HARTREE_EV = 27.211386245988


def dipole_from_density(density: np.ndarray, r_ints: np.ndarray, nuclear_dipole: np.ndarray) -> np.ndarray:
    """density [T, S, nbf, nbf] (AO), r_ints [3, nbf, nbf] -> dipole [T, 3] (e*bohr), nuclear minus electronic."""
    return nuclear_dipole[None, :] - np.einsum("xij,tsji->tx", r_ints, density).real


def absorption_spectrum(time: np.ndarray, dipole: np.ndarray, kappa: float, direction=None, damping: float = 0.004,
                        omega: np.ndarray | None = None, emax_ev: float = 30.0, n_omega: int = 6000,
                        window: str = "exp", return_alpha: bool = False, t_kick: float | None = None):
    """Strength function of a kick with impulse ``kappa`` (a.u.; NWChem kick: amplitude * dt / 2).

    time [T] a.u.; dipole [T, 3]; ``direction`` (unit 3-vector, default: largest response) selects the component.
    ``window``: ``"exp"`` multiplies by exp(-damping t) (Lorentzian lines of half-width ``damping`` Ha);
    ``"gauss"`` by exp(-t^2 / (2 tau^2)) with tau = T_total / 3 (Gaussian lines of width 3 / T_total; ``damping``
    ignored) which leaves no truncation ripple and no long Lorentzian tails, the better choice for peak positions.
    Returns (omega [W] Ha, S [W] in 1/Ha), plus Im alpha [W] if ``return_alpha``; peaks are best located on Im alpha,
    since the factor omega in S shifts a line of width sigma by sigma^2 / omega. ``t_kick`` (a.u., default time[0])
    is the kick's centre: phases are taken relative to it, otherwise a kick at dt/2 mixes a dispersive part into
    Im alpha and shifts its peaks.
    """
    time = np.asarray(time, float)
    dip = np.asarray(dipole, float)
    if direction is None:
        d = dip - dip[0]
        direction = np.eye(3)[int(np.argmax(np.abs(d).max(0)))]
    signal = (dip - dip[0]) @ np.asarray(direction, float)  # [T]
    if omega is None:
        omega = np.linspace(0.0, emax_ev / HARTREE_EV, n_omega)
    dt = time[1] - time[0]
    tt = time - time[0]
    if window == "gauss":
        w = np.exp(-0.5 * (tt / (tt[-1] / 3.0)) ** 2)
    elif window == "exp":
        w = np.exp(-damping * tt)
    else:
        raise ValueError(f"absorption_spectrum: window must be 'exp' or 'gauss', got {window!r}")
    w[0] *= 0.5  # trapezoid end point
    # alpha(w) = (1/kappa) sum_t signal(t) exp(i w t) exp(-gamma t) dt, evaluated in blocks to bound memory.
    alpha = np.empty(len(omega), complex)
    for i in range(0, len(omega), 512):
        ph = np.exp(1j * np.outer(omega[i : i + 512], time - (time[0] if t_kick is None else t_kick)))  # [w, T]
        alpha[i : i + 512] = ph @ (signal * w) * dt / kappa
    s = 2.0 * omega * alpha.imag / np.pi
    return (omega, s, alpha.imag) if return_alpha else (omega, s)


def kick_of(traj) -> tuple[float, float]:
    """(impulse kappa, kick centre time) of a trajectory generated with a delta kick by the reference engine.

    NWChem-style grid kicks (Magnus) are an impulse amplitude*dt/2 centred at t0 + dt/2; the MMUT engine applies the
    same impulse as an instantaneous unitary at t0."""
    spec = traj.meta.get("field_spec", {})
    if spec.get("kind") != "delta":
        raise ValueError(f"trajectory {traj.molecule!r}: absorption spectra need a delta-kick field, got {spec!r}")
    mmut = traj.meta.get("integrator", {}).get("integrator") == "mmut"
    return spec["amplitude"] * traj.dt / 2, spec.get("t0", 0.0) + (0.0 if mmut else traj.dt / 2)


def trajectory_spectrum(traj, **kw):
    """:func:`absorption_spectrum` of a kicked trajectory along its kick polarization."""
    kappa, t_kick = kick_of(traj)
    return absorption_spectrum(traj.time, traj.dipole, kappa, direction=traj.meta["field_spec"]["polarization"],
                               t_kick=t_kick, **kw)


def find_peaks(omega: np.ndarray, s: np.ndarray, rel_height: float = 0.05) -> np.ndarray:
    """Positions (same unit as omega) of local maxima higher than rel_height * max(s), parabola-refined."""
    s = np.asarray(s)
    thr = rel_height * s.max()
    idx = np.where((s[1:-1] > s[:-2]) & (s[1:-1] >= s[2:]) & (s[1:-1] > thr))[0] + 1
    out = []
    for i in idx:
        y0, y1, y2 = s[i - 1], s[i], s[i + 1]
        den = y0 - 2 * y1 + y2
        shift = 0.5 * (y0 - y2) / den if den != 0 else 0.0
        out.append(omega[i] + shift * (omega[i + 1] - omega[i]))
    return np.asarray(out)


def excited_population(density: np.ndarray, overlap: np.ndarray, density_gs: np.ndarray) -> np.ndarray:
    """Electrons moved out of the ground-state occupied orbitals, per frame: densities [T, S, nbf, nbf] (AO) and the
    ground state [S, nbf, nbf] -> [T] float64, relative to frame 0 (so 0 before the field acts, whatever the
    storage precision). n_exc = N − Σ_σ tr(P_σ S P0_σ S); a total density (S = 1, closed shell) counts as
    P_α = P_β = P/2. What a strong or resonant pulse is run for: population transfer (weak fields move ~κ²)."""
    d = np.asarray(density, np.complex128)
    sp = overlap @ np.asarray(density_gs, np.complex128) @ overlap  # [S, nbf, nbf]
    kept = np.einsum("tsij,sji->t", d, sp).real * (0.5 if d.shape[1] == 1 else 1.0)  # [T]
    n = np.einsum("tsij,ji->t", d, overlap).real  # [T] electrons
    pop = n - kept
    return pop - pop[0]


def population_nrmse(pred: np.ndarray, ref: np.ndarray) -> float:
    """RMS(n_pred − n_ref) / RMS(n_ref) of excited populations [T] (:func:`excited_population`; 'nothing
    changes' scores 1)."""
    ref = np.asarray(ref)
    return float(np.sqrt(np.mean((np.asarray(pred) - ref) ** 2)) / max(np.sqrt(np.mean(ref ** 2)), 1e-300))


def scaled_l2(pred: np.ndarray, ref: np.ndarray) -> float:
    """||pred - ref||_F / ||ref||_F over all steps and spins (densities [T, S, nbf, nbf])."""
    return float(np.linalg.norm((pred - ref).ravel()) / np.linalg.norm(np.asarray(ref).ravel()))


def dipole_nrmse(pred: np.ndarray, ref: np.ndarray) -> float:
    """RMS(mu_pred - mu_ref) / RMS(mu_ref - mu_ref[0]) over steps and components ([T, 3]).

    Normalised by the induced dipole, so the trivial prediction "nothing changes" scores exactly 1."""
    ref = np.asarray(ref)
    denom = np.sqrt(np.mean((ref - ref[0]) ** 2))
    return float(np.sqrt(np.mean((np.asarray(pred) - ref) ** 2)) / max(denom, 1e-300))


def _band(omega, s_pred, s_ref, emax_ev):
    mask = omega * HARTREE_EV <= emax_ev
    return np.asarray(s_pred)[mask], np.asarray(s_ref)[mask]


def spectrum_nrmse(omega, s_pred, s_ref, emax_ev: float = 20.0) -> float:
    """RMS(S_pred - S_ref) / RMS(S_ref) for omega below ``emax_ev``."""
    p, r = _band(omega, s_pred, s_ref, emax_ev)
    return float(np.sqrt(np.mean((p - r) ** 2)) / max(np.sqrt(np.mean(r**2)), 1e-300))


def spectrum_overlap(omega, s_pred, s_ref, emax_ev: float = 20.0) -> float:
    """Cosine similarity <S_pred, S_ref> / (|S_pred| |S_ref|) below ``emax_ev`` (1 = identical shape)."""
    p, r = _band(omega, s_pred, s_ref, emax_ev)
    return float(p @ r / max(np.linalg.norm(p) * np.linalg.norm(r), 1e-300))
