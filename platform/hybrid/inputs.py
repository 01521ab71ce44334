"""Molecules the way chemists already hold them: PySCF ``Mole`` / mean-field objects and ASE ``Atoms``.

:func:`molecule_from` turns any of them (or an rtml :class:`Molecule`, a catalog name, an ``.xyz`` path) into the
rtml :class:`Molecule` the engine runs, centred on the centre of nuclear charge (the engine's dipole gauge origin:
a translation, so densities and spectra are unchanged; the dipole of a charged molecule is quoted about that
point). :func:`system_overrides` reads the basis set and functional a PySCF object carries, so a notebook user's
``mf = dft.RKS(mol, xc='PBE')`` runs with the same settings without restating them.

ASE is an optional extra (``pip install rtml[ase]``); nothing here imports it: an ``Atoms`` is recognised by its
methods.
"""

from __future__ import annotations

import numpy as np

from rtml.datasets.errors import DataError
from rtml.datasets.fields import FieldSpec
from rtml.datasets.molecules import Molecule, get_molecule


def _is_mole(obj) -> bool:
    return hasattr(obj, "atom_coords") and hasattr(obj, "natm") and hasattr(obj, "atom_pure_symbol")


def _is_mean_field(obj) -> bool:
    return hasattr(obj, "mol") and _is_mole(obj.mol) and hasattr(obj, "kernel")


def _is_atoms(obj) -> bool:
    return hasattr(obj, "get_chemical_symbols") and hasattr(obj, "get_positions")


def molecule_from(obj, name: str | None = None) -> Molecule:
    """An rtml :class:`Molecule` (centred, Å) from a catalog name / ``.xyz`` path, a :class:`Molecule`, a PySCF
    ``gto.Mole``, a PySCF mean-field object (its ``.mol``) or an ASE ``Atoms`` (charge and multiplicity from
    ``atoms.info['charge']`` / ``atoms.info['multiplicity']``, else neutral and the lowest multiplicity)."""
    if isinstance(obj, str):
        return get_molecule(obj)
    if isinstance(obj, Molecule):
        return obj.centred()
    if _is_mean_field(obj):
        obj = obj.mol
    if _is_mole(obj):
        if obj.natm == 0:
            raise DataError("<pyscf Mole>", "atom", "at least one atom (call mol.build())", "no atoms")
        symbols = tuple(obj.atom_pure_symbol(i) for i in range(obj.natm))
        pos = np.asarray(obj.atom_coords(unit="Angstrom"), np.float64)  # [n_atoms, 3] Å
        mol = Molecule(name=name or _formula(symbols), symbols=symbols, positions=pos, charge=int(obj.charge),
                       multiplicity=int(obj.spin) + 1)
        return mol.centred()
    if _is_atoms(obj):
        symbols = tuple(obj.get_chemical_symbols())
        if not symbols:
            raise DataError("<ase Atoms>", "symbols", "at least one atom", "no atoms")
        info = getattr(obj, "info", {}) or {}
        charge = int(info.get("charge", 0))
        mol = Molecule(name=name or _formula(symbols), symbols=symbols,
                       positions=np.asarray(obj.get_positions(), np.float64), charge=charge, multiplicity=1)
        mult = int(info.get("multiplicity", 1 + mol.n_electrons % 2))
        if (mult - 1) % 2 != mol.n_electrons % 2:
            raise DataError("<ase Atoms>", "info['multiplicity']",
                            f"a value compatible with {mol.n_electrons} electrons", str(mult))
        return Molecule(name=mol.name, symbols=symbols, positions=mol.positions, charge=charge,
                        multiplicity=mult).centred()
    raise DataError("<python>", "molecule", "a catalog name, an .xyz path, an rtml Molecule, a PySCF Mole or "
                    "mean-field object, or an ASE Atoms", type(obj).__name__)


def system_overrides(obj) -> dict:
    """``SystemConfig`` fields a PySCF object fixes: ``basis`` (one basis-set name for every atom) and ``xc``
    (a mean-field object's functional; 'HF' for Hartree–Fock). Empty for anything else."""
    out = {}
    mole = obj.mol if _is_mean_field(obj) else obj
    if _is_mole(mole) and mole.basis is not None:
        basis = mole.basis
        if isinstance(basis, dict):
            names = {str(v).lower() for v in basis.values()}
            if len(names) != 1:
                raise DataError("<pyscf Mole>", "basis", "one basis-set name for every element (rtml models "
                                "are trained per basis set)", repr(basis))
            basis = names.pop()
        if not isinstance(basis, str):
            raise DataError("<pyscf Mole>", "basis", "a basis-set name such as '6-31g'", type(basis).__name__)
        out["basis"] = basis.lower()
    if _is_mean_field(obj):
        out["xc"] = str(getattr(obj, "xc", None) or "HF")
    return out


def _formula(symbols) -> str:
    counts: dict[str, int] = {}
    for s in symbols:
        counts[s] = counts.get(s, 0) + 1
    return "".join(f"{s}{n if n > 1 else ''}" for s, n in counts.items())


def case_from_trajectory(traj) -> dict:
    """What a stored trajectory fixes for a re-run: molecule (its geometry), field, basis, functional, dt and the
    number of frames — the keyword arguments of :func:`rtml.platform.hybrid.api.propagate` besides the models."""
    from pyscf.data.elements import ELEMENTS

    spec = traj.meta.get("field_spec")
    if not spec:
        raise DataError(f"<trajectory {traj.molecule}>", "meta/field_spec", "the field the trajectory was driven by "
                        "(written by rtml generate / rtml propagate)", "none")
    mol = Molecule(name=traj.molecule, symbols=tuple(ELEMENTS[int(z)] for z in traj.atomic_numbers),
                   positions=np.asarray(traj.positions, np.float64), charge=int(traj.charge),
                   multiplicity=int(traj.multiplicity))
    return {"molecule": mol, "field": FieldSpec.from_dict(spec), "basis": traj.basis_name, "xc": traj.functional,
            "dt": float(traj.dt), "n_steps": int(traj.n_steps)}
