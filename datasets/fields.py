"""External electric fields E(t) (vector, atomic units: 1 a.u. = 514.2 V/nm), sampled on the propagation grid.

Kinds:
* ``delta``: NWChem's delta kick: E = amplitude * polarization at the single grid time ``t0`` and 0 elsewhere.
  With 2nd-order Magnus (trapezoidal field interpolation) this is an impulse of amplitude*dt/2 centred at t0 + dt/2.
* ``gaussian``: ``amplitude * exp(-(t - t0)^2 / (2 sigma^2)) * sin(omega t + phase)``.
* ``sine``: continuous ``amplitude * sin(omega t + phase)`` (switched on at t = 0).
* ``none``: field-free.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from rtml.datasets.errors import DataError

KINDS = ("delta", "gaussian", "sine", "none")


@dataclass(kw_only=True)
class FieldSpec:
    kind: str
    amplitude: float = 0.0  # a.u.
    polarization: tuple[float, float, float] = (1.0, 0.0, 0.0)  # normalised on use
    t0: float = 0.0  # a.u. of time
    sigma: float = 1.0  # a.u. of time (gaussian)
    omega: float = 0.0  # Hartree (angular frequency, a.u.)
    phase: float = 0.0
    label: str = field(default="")

    def __post_init__(self):
        if self.kind not in KINDS:
            raise DataError("<field spec>", "kind", f"one of {KINDS}", repr(self.kind))
        pol = np.asarray(self.polarization, float)
        if pol.shape != (3,) or not np.all(np.isfinite(pol)) or np.linalg.norm(pol) == 0:
            raise DataError("<field spec>", "polarization", "a non-zero 3-vector", repr(self.polarization))
        self.polarization = tuple(float(v) for v in pol / np.linalg.norm(pol))
        if self.kind == "gaussian" and self.sigma <= 0:
            raise DataError("<field spec>", "sigma", "a positive pulse width (a.u.)", repr(self.sigma))

    def values(self, t: np.ndarray, dt: float) -> np.ndarray:
        """E at times ``t`` ([T] a.u.) -> [T, 3] float64. ``dt`` locates the delta kick's grid point."""
        t = np.asarray(t, np.float64)
        pol = np.asarray(self.polarization)
        if self.kind == "delta":
            amp = np.where(np.abs(t - self.t0) < 0.25 * dt, self.amplitude, 0.0)
        elif self.kind == "gaussian":
            amp = self.amplitude * np.exp(-((t - self.t0) ** 2) / (2 * self.sigma**2)) * np.sin(
                self.omega * t + self.phase)
        elif self.kind == "sine":
            amp = np.where(t >= 0, self.amplitude * np.sin(self.omega * t + self.phase), 0.0)
        else:
            amp = np.zeros_like(t)
        return amp[:, None] * pol[None, :]  # [T, 3] float64

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FieldSpec:
        return cls(**{**d, "polarization": tuple(d.get("polarization", (1, 0, 0)))})


def kick(amplitude: float = 1e-3, polarization=(1.0, 0.0, 0.0)) -> FieldSpec:
    return FieldSpec(kind="delta", amplitude=amplitude, polarization=tuple(polarization), label="kick")


def _random_direction(rng: np.random.Generator) -> tuple[float, float, float]:
    v = rng.normal(size=3)
    return tuple(float(x) for x in v / np.linalg.norm(v))


def sample_field(kind: str, rng: np.random.Generator,
                 resonance: tuple[float, tuple[float, float, float]] | None = None) -> FieldSpec:
    """A random field of a named family, as used by ``rtml generate --fields``.

    * ``kick``: delta kick, amplitude log-uniform in [1e-3, 1e-2] a.u., random direction.
    * ``pulse``: Gaussian pulse, amplitude in [0.005, 0.03] a.u., omega in [0.1, 0.8] Ha, sigma in [5, 15] a.u.,
      centred at 3 sigma, random direction.
    * ``strong``: Gaussian pulse as ``pulse`` with amplitude in [0.04, 0.08] a.u. — beyond linear response (the
      linear-xc baseline fails here: LiH, 0.05 a.u., dipole nRMSE 1.6).
    * ``sine``: continuous wave, amplitude in [0.002, 0.01] a.u., omega in [0.1, 0.8] Ha, random direction.

    The field-regime tiers (:func:`field_tier`) each have a family, amplitudes log-uniform: ``weak`` pulses in
    [1e-3, 5e-3] a.u., ``moderate`` in [0.01, 0.03], ``resonant`` in [0.04, 0.1] at the molecule's first bright
    excitation (``resonance`` = (omega Ha, transition-dipole direction), from linear-response TDDFT; sigma in
    [8, 15] a.u.) — and ``mixed`` for training corpora: amplitude log-uniform over all tiers, [1e-3, 0.1] a.u.,
    resonant with probability 1/3 (omega detuned by up to ±5 %), else as ``pulse``.
    """
    if kind == "kick":
        return FieldSpec(kind="delta", amplitude=float(10 ** rng.uniform(-3, -2)),
                         polarization=_random_direction(rng), label="kick")
    if kind in ("pulse", "strong"):
        lo, hi = (0.005, 0.03) if kind == "pulse" else (0.04, 0.08)
        sigma = float(rng.uniform(5, 15))
        return FieldSpec(kind="gaussian", amplitude=float(rng.uniform(lo, hi)), omega=float(rng.uniform(0.1, 0.8)),
                         sigma=sigma, t0=3 * sigma, polarization=_random_direction(rng), label=kind)
    if kind in ("weak", "moderate"):
        lo, hi = (1e-3, 5e-3) if kind == "weak" else (0.01, 0.03)
        return _gaussian(_log_uniform(rng, lo, hi), float(rng.uniform(0.1, 0.8)), _random_direction(rng),
                         float(rng.uniform(5, 15)), kind)
    if kind in ("resonant", "mixed"):
        if resonance is None:
            raise DataError("<field spec>", "resonance", f"the molecule's first bright excitation for {kind!r} "
                            "fields (rtml.datasets.resonance.first_bright)", "None")
        omega, pol = resonance
        if kind == "resonant":
            return _gaussian(_log_uniform(rng, 0.04, 0.1), omega, pol, float(rng.uniform(8, 15)), kind)
        amp = _log_uniform(rng, 1e-3, 0.1)
        if rng.uniform() < 1 / 3:
            return _gaussian(amp, omega * float(rng.uniform(0.95, 1.05)), pol, float(rng.uniform(8, 15)), kind)
        return _gaussian(amp, float(rng.uniform(0.1, 0.8)), _random_direction(rng), float(rng.uniform(5, 15)),
                         kind)
    if kind == "sine":
        return FieldSpec(kind="sine", amplitude=float(rng.uniform(0.002, 0.01)), omega=float(rng.uniform(0.1, 0.8)),
                         polarization=_random_direction(rng), label="sine")
    raise DataError("<command line>", "fields", f"a comma list of {', '.join(FIELD_FAMILIES)}", repr(kind))


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _gaussian(amplitude, omega, polarization, sigma, label) -> FieldSpec:
    return FieldSpec(kind="gaussian", amplitude=amplitude, omega=omega, sigma=sigma, t0=3 * sigma,
                     polarization=tuple(polarization), label=label)


FIELD_FAMILIES = ("kick", "pulse", "strong", "sine", "weak", "moderate", "resonant", "mixed")
RESONANT_FAMILIES = ("resonant", "mixed")  # families that need the molecule's first bright excitation
TIERS = ("weak", "moderate", "strong")
WEAK_MAX = 0.0075  # a.u.: pulses up to this peak amplitude (and every kick) are 'weak'
MODERATE_MAX = 0.035  # a.u.: above WEAK_MAX up to this, 'moderate'; above it, 'strong'


def field_tier(spec: FieldSpec) -> str:
    """The field regime a trajectory belongs to: kicks (impulses ≤ 1e-2 a.u. in practice) and pulses up to
    ``WEAK_MAX`` are ``weak`` (linear response), pulses up to ``MODERATE_MAX`` ``moderate``, stronger ones
    ``strong``. Field-free trajectories count as weak."""
    if spec.kind in ("delta", "none"):
        return "weak"
    amp = abs(spec.amplitude)
    return "weak" if amp <= WEAK_MAX else "moderate" if amp <= MODERATE_MAX else "strong"
