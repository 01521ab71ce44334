"""Molecule catalog, geometry sampling and XYZ input.

Geometries are in Å. Every geometry rtml produces is centred so that the centre of nuclear charge is at the origin
(the dipole gauge origin, see :mod:`rtml.datasets.engine`); rotations are then rotations about that point.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from rtml.datasets.errors import DataError
from rtml.datasets.trajectory import atomic_number


@dataclass(kw_only=True, frozen=True)
class Molecule:
    """A molecule: element symbols, positions (Å), charge and spin multiplicity (2S+1)."""

    name: str
    symbols: tuple[str, ...]
    positions: np.ndarray  # [n_atoms, 3] float64, Å
    charge: int = 0
    multiplicity: int = 1

    @property
    def atomic_numbers(self) -> np.ndarray:
        return np.array([atomic_number(s) for s in self.symbols], np.int32)

    @property
    def n_electrons(self) -> int:
        return int(self.atomic_numbers.sum()) - self.charge

    def centred(self) -> Molecule:
        z = self.atomic_numbers.astype(float)
        centre = (z[:, None] * self.positions).sum(0) / z.sum()
        return replace(self, positions=np.asarray(self.positions - centre, np.float64))

    def pyscf_atom(self) -> list:
        return [(s, tuple(map(float, p))) for s, p in zip(self.symbols, self.positions)]


def _benzene() -> tuple[tuple[str, ...], np.ndarray]:
    ang = np.arange(6) * np.pi / 3
    ring = lambda r: np.stack([r * np.cos(ang), r * np.sin(ang), np.zeros(6)], 1)
    return ("C",) * 6 + ("H",) * 6, np.concatenate([ring(1.397), ring(1.397 + 1.084)])


def _acene(rings: int, cc: float = 1.40, ch: float = 1.08) -> tuple[tuple[str, ...], np.ndarray]:
    """Linear acene C(4r+2)H(2r+4) (naphthalene r = 2, tetracene r = 4): ideal hexagons of side ``cc`` Å fused
    along x, C–H ``ch`` Å pointing away from the ring centre, planar (z = 0)."""
    centres = np.stack([np.arange(rings) * np.sqrt(3) * cc, np.zeros(rings)], 1)  # [r, 2]
    ang = np.deg2rad(30 + 60 * np.arange(6))
    verts = (centres[:, None, :] + cc * np.stack([np.cos(ang), np.sin(ang)], 1)[None]).reshape(-1, 2)
    carbons = np.unique(np.round(verts, 6), axis=0)  # shared edges counted once
    hs = []
    for c in carbons:
        near = np.linalg.norm(centres - c, axis=1) < cc + 1e-3  # the rings this carbon belongs to
        if near.sum() == 1:  # an outer CH carbon
            u = c - centres[near][0]
            hs.append(c + ch * u / np.linalg.norm(u))
    xy = np.concatenate([carbons, np.asarray(hs)])
    pos = np.concatenate([xy, np.zeros((len(xy), 1))], 1)
    return ("C",) * len(carbons) + ("H",) * len(hs), pos


def _xh_n(x: str, n: int, r: float, angle_deg: float) -> tuple[tuple[str, ...], np.ndarray]:
    """X at the origin and n = 1, 2 or 3 hydrogens at distance ``r`` Å with H–X–H angle ``angle_deg``: HX along z;
    bent XH2 in the yz plane; XH3 pyramidal about −z (planar at 120°)."""
    if n == 1:
        return (x, "H"), np.array([[0, 0, 0], [0, 0, r]])
    half = np.deg2rad(angle_deg) / 2
    if n == 2:
        return (x, "H", "H"), np.array([[0, 0, 0], [0, r * np.sin(half), -r * np.cos(half)],
                                        [0, -r * np.sin(half), -r * np.cos(half)]])
    rho = 2 * r * np.sin(half) / np.sqrt(3)  # distance of each H from the C3 axis
    h = np.sqrt(max(r ** 2 - rho ** 2, 0.0))
    phi = np.deg2rad([90, 210, 330])
    return (x, "H", "H", "H"), np.concatenate([np.zeros((1, 3)), np.stack([rho * np.cos(phi), rho * np.sin(phi),
                                                                          -h * np.ones(3)], 1)])


def _catalog() -> dict[str, Molecule]:
    t = 0.6291  # CH4: C-H 1.0897 Å along the cube diagonals
    c6_sym, c6_pos = _benzene()
    raw = {
        "h2p": (("H", "H"), [[0, 0, 0], [0, 0, 1.06]], 1, 2),
        "h2": (("H", "H"), [[0, 0, 0], [0, 0, 0.74]], 0, 1),
        "hehp": (("He", "H"), [[0, 0, 0], [0, 0, 0.772]], 1, 1),
        "lih": (("Li", "H"), [[0, 0, 0], [0, 0, 1.595]], 0, 1),
        "h2o": (("O", "H", "H"), [[0, 0, 0.1173], [0, 0.7572, -0.4692], [0, -0.7572, -0.4692]], 0, 1),
        "nh3": (("N", "H", "H", "H"), [[0, 0, 0.1162], [0, 0.9397, -0.2711], [0.8138, -0.4699, -0.2711],
                                       [-0.8138, -0.4699, -0.2711]], 0, 1),
        "ch4": (("C", "H", "H", "H", "H"), [[0, 0, 0], [t, t, t], [-t, -t, t], [-t, t, -t], [t, -t, -t]], 0, 1),
        "c6h6": (c6_sym, c6_pos, 0, 1),
        "naphthalene": (*_acene(2), 0, 1),  # C10H8, 106 functions in 6-31G
        "tetracene": (*_acene(4), 0, 1),  # C18H12, 30 atoms, 186 functions in 6-31G
        # elements no training set has (few-shot benchmark): experimental geometries (NIST CCCBDB)
        "hcl": (*_xh_n("Cl", 1, 1.2746, 0.0), 0, 1),
        "h2s": (*_xh_n("S", 2, 1.3356, 92.11), 0, 1),
        "ph3": (*_xh_n("P", 3, 1.4200, 93.345), 0, 1),
        "bh3": (*_xh_n("B", 3, 1.1900, 120.0), 0, 1),
    }
    return {k: Molecule(name=k, symbols=s, positions=np.asarray(p, np.float64), charge=c, multiplicity=m).centred()
            for k, (s, p, c, m) in raw.items()}


CATALOG: dict[str, Molecule] = _catalog()


def read_xyz(path: str | Path, charge: int | None = None, multiplicity: int | None = None) -> Molecule:
    """Read an XYZ file (Å). The comment line may carry ``charge=Q`` and ``multiplicity=M`` (CLI values win)."""
    path = Path(path)
    src = str(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise DataError(src, "file", "a readable XYZ file", str(exc)) from None
    try:
        n = int(lines[0].split()[0])
    except (IndexError, ValueError):
        raise DataError(src, "line 1", "the number of atoms", repr(lines[0] if lines else "")) from None
    if len(lines) < n + 2:
        raise DataError(src, "atoms", f"{n} atom lines after the comment line", f"{max(len(lines) - 2, 0)}")
    opts = dict(kv.split("=", 1) for kv in lines[1].split() if "=" in kv)
    symbols, pos = [], []
    for i, line in enumerate(lines[2 : n + 2], start=3):
        parts = line.split()
        if len(parts) < 4:
            raise DataError(src, f"line {i}", "'Element x y z'", repr(line))
        atomic_number(parts[0], f"{src}:{i}")
        try:
            pos.append([float(v) for v in parts[1:4]])
        except ValueError:
            raise DataError(src, f"line {i}", "three float coordinates in Å", repr(line)) from None
        symbols.append(parts[0].capitalize())
    q = charge if charge is not None else int(opts.get("charge", 0))
    mult = multiplicity if multiplicity is not None else int(opts.get("multiplicity", 0)) or None
    mol = Molecule(name=path.stem, symbols=tuple(symbols), positions=np.asarray(pos, np.float64), charge=q,
                   multiplicity=1)
    if mult is None:
        mult = 1 + mol.n_electrons % 2
    if (mult - 1) % 2 != mol.n_electrons % 2:
        raise DataError(src, "multiplicity", f"a value compatible with {mol.n_electrons} electrons", str(mult))
    return replace(mol, multiplicity=mult).centred()


def get_molecule(name_or_path: str) -> Molecule:
    """A catalog molecule by name (case-insensitive) or a molecule read from an ``.xyz`` path."""
    key = name_or_path.lower()
    if key in CATALOG:
        return CATALOG[key]
    if name_or_path.endswith(".xyz"):
        return read_xyz(name_or_path)
    raise DataError("<command line>", "molecule", f"one of {sorted(CATALOG)} or a path to an .xyz file",
                    repr(name_or_path))


@dataclass(kw_only=True)
class GeometrySampling:
    """How geometry k > 0 of a molecule is drawn (geometry 0 is always the catalog geometry)."""

    stretch: float = 0.08  # all interatomic distances scaled by a uniform factor in [1 - stretch, 1 + stretch]
    displacement: float = 0.03  # Gaussian per-atom displacement, standard deviation in Å
    rotate: bool = True  # a uniformly random rotation


def sample_geometry(mol: Molecule, index: int, seed: int, cfg: GeometrySampling | None = None) -> Molecule:
    """Geometry ``index`` of ``mol``; reproducible from (seed, molecule name, index)."""
    if index == 0:
        return mol.centred()
    cfg = cfg or GeometrySampling()
    rng = np.random.default_rng([seed, zlib.crc32(mol.name.encode()), index])
    pos = mol.centred().positions
    pos = pos * rng.uniform(1 - cfg.stretch, 1 + cfg.stretch)
    pos = pos + rng.normal(0.0, cfg.displacement, size=pos.shape)
    if cfg.rotate:
        pos = pos @ Rotation.random(random_state=rng).as_matrix().T
    return replace(mol, positions=pos).centred()
