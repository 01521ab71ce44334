"""Unit conversions, from PySCF's CODATA constants (one source for the whole package).

Geometries are stored in Å (as in XYZ files and PySCF's default ``unit``); models and integrals work in bohr.
"""

from pyscf.data.nist import BOHR  # Å per bohr

ANGSTROM_TO_BOHR = 1.0 / BOHR
