"""One trajectory's time loop as an object: the state of the reference integrator and one step of it.

:class:`ReferenceStepper` holds P'(t) (Löwdin basis), F'(t) and the history the integrators need (the previous
field-free Fock matrix for the extrapolated Magnus guess, P'(t − dt) for MMUT's leapfrog), and advances by one
``dt`` with :meth:`step`. :func:`rtml.datasets.engine.run.propagate` drives it from the SCF ground state; the hybrid
propagator (:mod:`rtml.platform.hybrid`) starts it from any state a surrogate hands over, which is why it exists
apart from the loop that records frames.

Both integrators share one interface: ``step(fail) -> Fock builds used``. ``fail(message)`` is called (and must
raise) when the Magnus self-consistency does not converge.
"""

from __future__ import annotations

import numpy as np

from rtml.datasets.engine.propagator import IntegratorConfig, expm_herm, unitary_apply
from rtml.datasets.engine.system import ElectronicSystem


class ReferenceStepper:
    """sysm: the molecule's :class:`ElectronicSystem`; e_fock [n+1, 3] a.u., the field entering the Fock matrix on
    the frame grid; p_orth [S, N, N] complex128 Löwdin density at frame ``k``; p_gs the ground state's (for the
    self-consistency tolerance, which scales with the perturbation |P' − P'_gs|).
    A fresh stepper has no history: its first Magnus guess is F'(t) (not the extrapolation), and MMUT starts with
    one Magnus step — the converged result differs from a continuing stepper only within the tolerance."""

    def __init__(self, sysm: ElectronicSystem, cfg: IntegratorConfig, e_fock: np.ndarray, p_orth: np.ndarray,
                 p_gs: np.ndarray, k: int = 0):
        self.sysm, self.cfg, self.e_fock = sysm, cfg, e_fock
        self.r_orth = sysm.fock_to_orth(sysm.r_ints)  # [3, N, N]
        self.p, self.p_gs, self.k = p_orth, p_gs, k
        f_ao, self.vhf = sysm.fock(sysm.from_orth(p_orth), e_fock[k])
        self.f = sysm.fock_to_orth(f_ao)  # [S, N, N] F'(t) with the field
        self.g_prev = None  # field-free part of F' one step back (Magnus extrapolation)
        self.p_prev = None  # P' at t - dt (MMUT)

    @property
    def density_ao(self) -> np.ndarray:
        """[S, N, N] complex128 AO density of the current frame."""
        return self.sysm.from_orth(self.p)

    def step(self, fail) -> int:
        """Advance P'(t) -> P'(t + dt); returns the number of Fock builds used."""
        sysm, icfg, k, dt = self.sysm, self.cfg, self.k, self.cfg.dt
        e_fock, r_orth, p, f = self.e_fock, self.r_orth, self.p, self.f
        g = f - np.einsum("x,xij->ij", e_fock[k], r_orth)
        if icfg.integrator == "mmut" and self.p_prev is not None:
            p_next = unitary_apply(expm_herm(f, 2 * dt), self.p_prev)
            f_ao, vhf = sysm.fock(sysm.from_orth(p_next), e_fock[k + 1])
            f_next, nit = sysm.fock_to_orth(f_ao), 1
        else:
            g_guess = g if self.g_prev is None else 2 * g - self.g_prev
            f_guess = g_guess + np.einsum("x,xij->ij", e_fock[k + 1], r_orth)
            tol = icfg.sc_atol + icfg.sc_rtol * float(np.max(np.abs(p - self.p_gs)))
            prev_err = np.inf
            for nit in range(1, icfg.sc_max_iter + 1):
                p_next = unitary_apply(expm_herm(0.5 * (f + f_guess), dt), p)
                f_ao, vhf = sysm.fock(sysm.from_orth(p_next), e_fock[k + 1])
                f_next = sysm.fock_to_orth(f_ao)
                err = float(np.max(np.abs(f_next - f_guess)))
                f_guess = f_next
                # Converged, or stalled at the Fock build's numerical noise floor (grid, screening).
                if err <= tol or (nit > 2 and err > 0.5 * prev_err and err <= icfg.sc_noise_floor):
                    break
                prev_err = err
            else:
                fail(f"Magnus self-consistency did not reach {tol:.1e} in {nit} iterations (last change {err:.1e})")
        self.g_prev, self.p_prev, self.p, self.f, self.vhf = g, p, p_next, f_next, vhf
        self.k = k + 1
        return nit
