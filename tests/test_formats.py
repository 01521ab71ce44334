"""HDF5 schema round trip, NWChem parsers, and clear errors for every kind of bad input."""

import dataclasses

import h5py
import numpy as np
import pytest
from conftest import FIXTURES

from rtml.datasets.errors import DataError
from rtml.datasets.formats.hdf5 import read_hdf5, write_hdf5
from rtml.datasets.formats.nwchem import (
    basis_permutation,
    parse_timeseries,
    read_density_snapshot,
    read_output,
    read_restart,
)
from rtml.datasets.formats.nwchem_trajectory import nwchem_trajectory
from rtml.datasets.molecules import read_xyz

NW_OUT = [FIXTURES / "h2o_6-31g_lda_scf_basis_trimmed.out", FIXTURES / "h2o_6-31g_lda_rt_timeseries_trimmed.out"]


def test_hdf5_round_trip_follows_the_schema(tmp_path, h2o_traj):
    path = write_hdf5(h2o_traj, tmp_path / "h2o.h5")
    with h5py.File(path) as f:
        for key in ("molecule", "n_atoms", "n_electrons", "n_basis", "n_steps", "dt", "charge", "multiplicity"):
            assert key in f.attrs
        assert f["dynamics/density_real"].dtype == np.float32
        assert f["dynamics/density_real"].shape == (20, 1, 13, 13)
        assert f["basis/magnetic_quantum"].dtype == np.int32
    back = read_hdf5(path)
    assert np.abs(back.density - h2o_traj.density).max() < 1e-6
    np.testing.assert_array_equal(back.basis.shell_index, h2o_traj.basis.shell_index)
    np.testing.assert_allclose(back.positions, h2o_traj.positions)
    assert back.meta["field_spec"]["kind"] == "delta"


def _corrupt(tmp_path, traj, edit):
    path = write_hdf5(traj, tmp_path / "bad.h5")
    with h5py.File(path, "a") as f:
        edit(f)
    return path


@pytest.mark.parametrize("edit,field,what", [
    (lambda f: f.__delitem__("dynamics/dipole"), "dynamics/dipole", "missing"),
    (lambda f: f.__delitem__("matrices/overlap"), "matrices/overlap", "missing"),
    (lambda f: f.attrs.__delitem__("dt"), "attrs/dt", "root attribute"),
])
def test_hdf5_missing_pieces(tmp_path, h2o_traj, edit, field, what):
    with pytest.raises(DataError, match=f"bad.h5: field '{field}'.*{what}"):
        read_hdf5(_corrupt(tmp_path, h2o_traj, edit))


def test_hdf5_truncated_dataset(tmp_path, h2o_traj):
    def trunc(f):
        d = f["dynamics/density_imag"][:10]
        del f["dynamics/density_imag"]
        f["dynamics/density_imag"] = d
    with pytest.raises(DataError, match="density_imag"):
        read_hdf5(_corrupt(tmp_path, h2o_traj, trunc))


def test_hdf5_truncated_file(tmp_path, h2o_traj):
    path = write_hdf5(h2o_traj, tmp_path / "cut.h5")
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(DataError, match="cut.h5: field 'file'"):
        read_hdf5(path)


def _set(name, fn):
    def edit(f):
        f[name][...] = fn(f[name][()])
    return edit


@pytest.mark.parametrize("edit,match", [
    (_set("dynamics/density_real", lambda a: np.where(np.arange(a.size).reshape(a.shape) == 7, np.nan, a)),
     "density_real.*finite values"),
    (_set("dynamics/density_real", lambda a: a * np.inf), "finite"),
    (_set("dynamics/density_imag", lambda a: a + 0.1), "Hermitian"),
    (_set("dynamics/density_real", lambda a: a * 1.1), r"trace\(P S\)"),
    (_set("geometry/atomic_numbers", lambda a: a + 200), "atomic_numbers"),
])
def test_hdf5_bad_values(tmp_path, h2o_traj, edit, match):
    with pytest.raises(DataError, match=match):
        read_hdf5(_corrupt(tmp_path, h2o_traj, edit))


def test_nbf_mismatching_basis_metadata(h2o_traj):
    bad = dataclasses.replace(h2o_traj, basis=dataclasses.replace(h2o_traj.basis, l=h2o_traj.basis.l[:-1]))
    with pytest.raises(DataError, match="basis/l.*nbf=13"):
        bad.validate("mem")


def test_unknown_element_in_xyz(tmp_path):
    p = tmp_path / "bad.xyz"
    p.write_text("2\n\nH 0 0 0\nQq 0 0 1\n")
    with pytest.raises(DataError, match="bad.xyz:4: field 'element'.*'Qq'"):
        read_xyz(p)
    p.write_text("2\ncharge=1\nH 0 0 0\nHe 0 0 0.77\n")
    mol = read_xyz(p)
    assert mol.charge == 1 and mol.multiplicity == 1 and mol.n_electrons == 2


def test_nwchem_output_parsing():
    run = read_output(NW_OUT)
    assert run.symbols == ["O", "H", "H"] and run.dt == pytest.approx(0.2)
    np.testing.assert_allclose(run.positions[1], [0, 0.7572, -0.4692])
    np.testing.assert_array_equal(run.nw_to_pyscf_permutation(), [0, 1, 5, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12])
    t, mu = run.series_of("Dipole moment [system]")
    np.testing.assert_allclose(t, [0.0, 0.2, 79.6])
    assert mu[1, 0] == pytest.approx(2.546432864137e-06)
    assert run.series_of("Etot")[1][0, 0] == pytest.approx(-75.81793019389)


def test_sp_shells_are_split_and_permuted():
    perm = basis_permutation(["C", "H"], {"C": [0, 0, 1, 0, 1, 2], "H": [0]})
    assert perm.tolist()[:6] == [0, 1, 5, 2, 3, 4]
    assert sorted(perm.tolist()) == list(range(15))


def test_restart_and_snapshot_agree():
    perm = read_output(NW_OUT).nw_to_pyscf_permutation()
    t, p = read_restart(FIXTURES / "h2o_6-31g_lda_kick0.01_t0.6.rt_restart", perm)
    snap = read_density_snapshot(FIXTURES / "h2o_6-31g_lda_kick0.01.ptot_ao_re.0000000004", 13, perm)
    assert p.shape == (1, 13, 13) and t == pytest.approx(0.6)
    assert np.abs(p[0].real - snap).max() < 1e-9
    assert np.abs(p[0] - p[0].conj().T).max() < 1e-9


def test_nwchem_trajectory_has_the_right_trace():
    traj = nwchem_trajectory(NW_OUT[:1] + [FIXTURES / "h2o_6-31g_lda_kick0.01_dens_timeseries.out"],
                             [FIXTURES / "h2o_6-31g_lda_kick0.01_t0.6.rt_restart"], "6-31g", "LDA,VWN", charge=0)
    assert traj.n_steps == 1 and traj.nbf == 13
    assert traj.electron_count()[0] == pytest.approx(10.0, abs=1e-6)
    assert traj.dipole[0, 0] == pytest.approx(1.109684531567e-03)


@pytest.mark.parametrize("text", [
    "<rt_tddft>:  0.2  1.0  abc  # Dipole moment [system]\n",  # time-series lines but no geometry block
    "random text\n",
])
def test_malformed_nwchem_output(tmp_path, text):
    """An output without its geometry is refused by file and field (malformed time-series values: next test)."""
    p = tmp_path / "broken.out"
    p.write_text(text)
    with pytest.raises(DataError, match="broken.out: field 'geometry'.*Output coordinates in angstroms"):
        read_output(p)


def test_malformed_timeseries_line_and_restart(tmp_path):
    with pytest.raises(DataError, match="x.out: field 'line 2'.*values"):
        parse_timeseries("<rt_tddft>: 0.0 1.0 2.0 # Etot\n<rt_tddft>: 0.2 1.0 # Etot\n", "x.out")
    bad = tmp_path / "short.rt_restart"
    lines = (FIXTURES / "h2o_6-31g_lda_kick0.01_t0.6.rt_restart").read_text().splitlines()
    bad.write_text("\n".join(lines[:7] + [lines[7][:500]]))
    with pytest.raises(DataError, match="short.rt_restart: field 'density'.*338 numbers"):
        read_restart(bad)
    snap = tmp_path / "snap"
    snap.write_bytes(b"\0" * 100)
    with pytest.raises(DataError, match="snap: field 'density'"):
        read_density_snapshot(snap, 13)
