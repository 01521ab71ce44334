"""NWChem 7.0.2 rt_tddft outputs: time series, geometry, basis, ``.rt_restart`` complex densities, ``ptot_ao_re``
real-part snapshots.

Basis order: NWChem keeps each atom's shells in library order (Pople SP shells become S then P); PySCF orders an
atom's shells by l. Everything returned here is permuted to PySCF's order (:mod:`rtml.datasets.basis`):
``P_pyscf = P_nw[perm][:, perm]``. p functions are (x, y, z) in both codes. Only spherical-equivalent shells
(s, p) are supported; a cartesian d shell raises a :class:`DataError` (its normalisation versus PySCF is unchecked).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtml.datasets.errors import DataError
from rtml.datasets.trajectory import atomic_number

_TS = re.compile(r"^<(?P<tag>[^>]+)>:\s+(?P<t>[-+0-9.Ee]+)\s+(?P<vals>[-+0-9.Ee\s]+?)\s+#\s*(?P<label>.+?)\s*$")
_FLOAT = r"[-+]?\d+\.\d*(?:[EeDd][-+]?\d+)?"
_NL = {"S": 0, "P": 1, "D": 2, "F": 3}


@dataclass(kw_only=True)
class NWChemRun:
    """What one rt_tddft output holds. Time series are dicts label -> (times [T], values [T, k])."""

    source: str
    symbols: list[str]
    positions: np.ndarray  # [n_atoms, 3] Å
    shells: dict[str, list[int]]  # element -> l of each shell in NWChem order
    series: dict[str, tuple[np.ndarray, np.ndarray]]
    dt: float | None
    charge: int | None

    def nw_to_pyscf_permutation(self) -> np.ndarray:
        return basis_permutation(self.symbols, self.shells)

    def series_of(self, label: str) -> tuple[np.ndarray, np.ndarray]:
        if label not in self.series:
            raise DataError(self.source, label, "an rt_tddft time series with this label (check the 'print' block)",
                            f"labels {sorted(self.series)}")
        return self.series[label]


def parse_timeseries(text: str, source: str = "<text>") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """All ``<tag>: t v1 v2 ... # label`` lines, grouped by label (the last run in the file wins)."""
    rows: dict[str, list] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.startswith("<") or "###" in line:
            continue
        mt = _TS.match(line)
        if mt is None:
            continue
        try:
            t = float(mt["t"])
            vals = [float(v) for v in mt["vals"].split()]
        except ValueError:
            raise DataError(source, f"line {lineno}", "'<tag>: time value... # label' with float values",
                            repr(line[:100])) from None
        label = mt["label"]
        lst = rows.setdefault(label, [])
        if lst and t <= lst[-1][0] and t == 0.0:  # a second propagation in the same file starts over
            lst.clear()
        if lst and len(vals) != len(lst[-1][1]):
            raise DataError(source, f"line {lineno}", f"{len(lst[-1][1])} values for '{label}'", str(len(vals)))
        lst.append((t, vals))
    return {k: (np.array([r[0] for r in v]), np.array([r[1] for r in v])) for k, v in rows.items()}


def parse_geometry(text: str, source: str) -> tuple[list[str], np.ndarray]:
    """The 'Output coordinates in angstroms' table (last one in the file)."""
    blocks = text.split("Output coordinates in angstroms")
    if len(blocks) < 2:
        raise DataError(source, "geometry", "an 'Output coordinates in angstroms' block (NWChem output)")
    symbols, pos = [], []
    row = re.compile(rf"^\s*\d+\s+(\S+)\s+{_FLOAT}\s+({_FLOAT})\s+({_FLOAT})\s+({_FLOAT})\s*$")
    started = False
    for line in blocks[-1].splitlines():
        m = row.match(line)
        if m:
            started = True
            symbols.append(re.sub(r"[^A-Za-z]", "", m[1]))
            pos.append([float(m[2]), float(m[3]), float(m[4])])
        elif started and line.strip() == "":
            break
    if not symbols:
        raise DataError(source, "geometry", "atom rows 'No. Tag Charge X Y Z' after the coordinates header")
    for s in symbols:
        atomic_number(s, source)
    return symbols, np.asarray(pos, np.float64)


def parse_basis(text: str, source: str) -> dict[str, list[int]]:
    """Shell angular momenta per element, in NWChem order, from the ``basis print`` block."""
    m = re.search(r'Basis "ao basis" -> "ao basis" \((\w+)\)\n(.*?)\n\s*Summary of', text, re.DOTALL)
    if m is None:
        raise DataError(source, "basis", "a printed 'Basis \"ao basis\"' block (add 'basis print' to the input)")
    shells: dict[str, list[int]] = {}
    element, last = None, None
    for line in m[2].splitlines():
        head = re.match(r"^\s*([A-Z][a-z]?)\s+\(\w+\)\s*$", line)
        if head:
            element, last = head[1], None
            shells[element] = []
            continue
        sh = re.match(rf"^\s*(\d+)\s+([SPDF]|SP|L)\s+{_FLOAT}", line)
        if sh and element is not None and sh[1] != last:
            kind = sh[2]
            if kind in ("SP", "L"):
                shells[element] += [0, 1]
            else:
                shells[element].append(_NL[kind])
            last = sh[1]
    if any(lv > 1 for v in shells.values() for lv in v):
        raise DataError(source, "basis", "s and p shells only (d/f ordering versus PySCF is not supported)")
    if not shells:
        raise DataError(source, "basis", "at least one element with shells in the 'ao basis' block")
    return shells


def basis_permutation(symbols: list[str], shells: dict[str, list[int]]) -> np.ndarray:
    """perm with P_pyscf = P_nw[perm][:, perm]: per atom, shells stably sorted by l."""
    perm, offset = [], 0
    for s in symbols:
        if s not in shells:
            raise DataError("<nwchem basis>", "basis", f"shells for element {s}", f"elements {sorted(shells)}")
        starts, pos = [], offset
        for lv in shells[s]:
            starts.append((lv, pos))
            pos += 2 * lv + 1
        for lv, st in sorted(starts, key=lambda x: x[0]):
            perm += list(range(st, st + 2 * lv + 1))
        offset = pos
    return np.asarray(perm, np.int64)


def read_output(paths: str | Path | list) -> NWChemRun:
    """Parse an NWChem output with geometry, ``basis print`` block and rt_tddft time series. ``paths`` may be a list
    of files read as one text (e.g. an output split into its SCF and rt_tddft parts)."""
    paths = [Path(p) for p in (paths if isinstance(paths, (list, tuple)) else [paths])]
    text = ""
    for path in paths:
        try:
            text += path.read_text(errors="replace") + "\n"
        except OSError as exc:
            raise DataError(str(path), "file", "a readable NWChem output", str(exc)) from None
    src = "+".join(str(p) for p in paths)
    symbols, pos = parse_geometry(text, src)
    series = parse_timeseries(text, src)
    if not series:
        raise DataError(src, "rt_tddft", "time-series lines '<rt_tddft>: t values # label'")
    dt = re.search(rf"Time step \(dt\)\s*:\s*({_FLOAT})", text)
    charge = re.search(r"System charge\s*:\s*(-?\d+)", text)
    return NWChemRun(source=src, symbols=symbols, positions=pos, shells=parse_basis(text, src), series=series,
                     dt=float(dt[1].replace("D", "E")) if dt else None, charge=int(charge[1]) if charge else None)


def read_restart(path: str | Path, perm: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """``.rt_restart`` -> (t, P [nmats, nbf, nbf] complex128), permuted to PySCF order if ``perm`` is given."""
    src = str(path)
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise DataError(src, "file", "a readable .rt_restart file", str(exc)) from None
    head = {}
    for line in lines[:8]:
        parts = line.split()
        if len(parts) == 2:
            head[parts[0]] = parts[1]
    for key in ("nmats", "nbf_ao", "t", "checksum"):
        if key not in head:
            raise DataError(src, key, "an 'RT-TDDFT restart file' header line with this key")
    nmats, nbf = int(head["nmats"]), int(head["nbf_ao"])
    try:
        vals = np.array(" ".join(lines[7:]).replace("D", "E").split(), dtype=np.float64)
    except ValueError:
        raise DataError(src, "density", "float values after the header") from None
    want = 2 * nmats * nbf * nbf
    if vals.size != want:
        raise DataError(src, "density", f"{want} numbers (2 * nmats * nbf^2)", str(vals.size))
    p = (vals[0::2] + 1j * vals[1::2]).reshape(nmats, nbf, nbf)
    if perm is not None:
        p = p[:, perm][:, :, perm]
    return float(head["t"].replace("D", "E")), p


def read_density_snapshot(path: str | Path, nbf: int, perm: np.ndarray | None = None) -> np.ndarray:
    """``<prefix>.ptot_ao_re.<it>`` (Fortran unformatted, record j = column j) -> Re P [nbf, nbf] float64."""
    src = str(path)
    raw = Path(path).read_bytes()
    rec = 8 * nbf
    if len(raw) != nbf * (rec + 8):
        raise DataError(src, "density", f"{nbf} Fortran records of {nbf} float64 ({nbf * (rec + 8)} bytes)",
                        f"{len(raw)} bytes")
    cols = []
    for j in range(nbf):
        off = j * (rec + 8)
        m1 = int.from_bytes(raw[off : off + 4], "little")
        m2 = int.from_bytes(raw[off + 4 + rec : off + 8 + rec], "little")
        if m1 != rec or m2 != rec:
            raise DataError(src, f"record {j + 1}", f"4-byte record markers equal to {rec}", f"{m1}, {m2}")
        cols.append(np.frombuffer(raw[off + 4 : off + 4 + rec], "<f8"))
    p = np.stack(cols, axis=1)
    return p[perm][:, perm] if perm is not None else p
