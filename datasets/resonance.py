"""The molecule's first bright excitation from linear-response TDDFT: the frequency and direction of resonant pulses.

A resonant pulse drives population out of the ground state (what strong-field RT-TDDFT is run for); its frequency is
the lowest excitation with a non-negligible oscillator strength and its polarisation the transition dipole of that
excitation.
"""

from __future__ import annotations

import numpy as np

from rtml.datasets.errors import DataError
from rtml.datasets.molecules import Molecule
from rtml.datasets.observables import HARTREE_EV
from rtml.datasets.validation import linear_response


def first_bright(mol: Molecule, basis: str, xc: str, min_strength: float = 0.02,
                 nstates: int = 12) -> tuple[float, tuple[float, float, float]]:
    """(omega in Hartree, unit polarisation) of the lowest excitation whose oscillator strength is at least
    ``min_strength`` (default 0.02). Raises DataError when none of the ``nstates`` lowest states is bright."""
    e_ev, f_xyz, tdm = linear_response(mol, basis, xc, nstates=nstates, transition_dipoles=True)  # [n], [n, 3] x2
    f = f_xyz.sum(-1)
    bright = np.flatnonzero(f >= min_strength)
    if not len(bright):
        raise DataError(f"<{mol.name}/{basis}/{xc}>", "resonance", f"an excitation with oscillator strength >= "
                        f"{min_strength} among the {len(e_ev)} lowest", f"strengths {np.round(f, 4).tolist()}")
    i = int(bright[0])
    pol = tdm[i] / np.linalg.norm(tdm[i])  # the transition dipole's direction (its overall sign is arbitrary)
    return float(e_ev[i] / HARTREE_EV), tuple(float(v) for v in pol)
