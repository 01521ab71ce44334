"""SCF warm start: the rotated neighbour density is exact for a pure rotation and shortens the SCF."""

from dataclasses import replace

import numpy as np
from scipy.spatial.transform import Rotation

from rtml.datasets.basis import basis_info_from_mol
from rtml.datasets.engine.system import ElectronicSystem, SystemConfig
from rtml.datasets.molecules import CATALOG, sample_geometry
from rtml.platform.hybrid.warm_start import KnownDensity, rotated_guess


def _known(mol):
    sysm = ElectronicSystem(mol, SystemConfig())
    p = sysm.ground_state()
    info = basis_info_from_mol(sysm.mol)
    first = np.r_[0, np.flatnonzero(np.diff(info.shell_index)) + 1]
    return KnownDensity(molecule=mol, density=p, shell_l=info.l[first]), sysm.scf_cycles


def test_rotated_density_is_the_rotated_molecules_ground_state():
    h2o = CATALOG["h2o"].centred()
    known, cold_cycles = _known(h2o)
    r = Rotation.from_euler("zyx", [0.7, -1.1, 2.3]).as_matrix()
    turned = replace(h2o, positions=h2o.positions @ r.T)
    far = sample_geometry(CATALOG["h2o"], 3, 0)  # a distorted neighbour must not be chosen
    guess, rmsd = rotated_guess(turned, [_known(far)[0], known])
    assert rmsd < 1e-12
    sysm = ElectronicSystem(turned, SystemConfig())
    exact = sysm.ground_state(guess)
    assert np.abs(guess - exact.real).max() < 1e-6  # SCF tolerance: the rotation itself is exact
    assert sysm.scf_cycles < cold_cycles
