"""Zarr trajectory store, window dataset, batching, radius graphs, generation with Ray, and the CLI."""

import multiprocessing as mp
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from rtml.cli.main import main
from rtml.datasets.errors import DataError
from rtml.datasets.generate import GenerateConfig, generate
from rtml.datasets.store.zarr_store import TrajectoryStore
from rtml.datasets.windows import FIRST_START, WindowReader, collate_windows, split_of
from rtml.models.radius_graph import radius_graph


@pytest.fixture(scope="module")
def store(tmp_path_factory, h2_traj, h2o_traj, h2p_traj):
    path = tmp_path_factory.mktemp("s") / "mixed.zarr"
    st = TrajectoryStore(path, mode="a", precision="float64", chunk_steps=4, shard_steps=16)
    for i, t in enumerate([h2_traj, h2o_traj, h2p_traj]):
        st.append(t, f"{t.molecule}-{i}")
    return str(path)


def test_mixed_store_round_trip_and_index(store, h2_traj, h2o_traj, h2p_traj):
    st = TrajectoryStore(store)
    assert [e["nbf"] for e in st.index] == [4, 13, 2]
    for tid, ref in zip(st.ids(), [h2_traj, h2o_traj, h2p_traj]):
        back = st.read(tid)
        np.testing.assert_array_equal(back.density, ref.density)  # float64 storage is exact
        np.testing.assert_array_equal(back.basis.m, ref.basis.m)
    shard_files = list(Path(store, "trajectories", "h2-0", "density", "c").rglob("*"))
    assert len([f for f in shard_files if f.is_file()]) == 3  # 40 steps in shards of 16 steps
    assert st.summary()["molecules"]["h2o"]["nbf"] == 13


def _read_all(path, q):
    st = TrajectoryStore(path)
    q.put(sum(float(np.abs(st.read(t).density).sum()) for t in st.ids()))


@pytest.mark.integration  # reader processes
def test_concurrent_readers(store):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_read_all, args=(store, q)) for _ in range(2)]
    for p in procs:
        p.start()
    vals = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join()
    assert vals[0] == vals[1] > 0


def test_corrupt_chunk_is_reported(tmp_path, store):
    bad = tmp_path / "bad.zarr"
    shutil.copytree(store, bad)
    chunk = next(f for f in (bad / "trajectories" / "h2o-1" / "density" / "c").rglob("*") if f.is_file())
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 3 : len(raw) // 3 + 64] = b"\xff" * 64
    chunk.write_bytes(bytes(raw))
    st = TrajectoryStore(bad)
    with pytest.raises(DataError, match="bad.zarr/trajectories/h2o-1/density"):
        st.read("h2o-1")
    problems = st.verify()
    assert len(problems) == 1 and "h2o-1" in problems[0]


def test_bad_store_paths(tmp_path, h2_traj):
    with pytest.raises(DataError, match="existing Zarr trajectory store"):
        TrajectoryStore(tmp_path / "missing.zarr")
    st = TrajectoryStore(tmp_path / "a.zarr", mode="a")
    st.append(h2_traj, "x")
    with pytest.raises(DataError, match="already in the index"):
        st.append(h2_traj, "x")
    with pytest.raises(DataError, match="read-only"):
        TrajectoryStore(tmp_path / "a.zarr").append(h2_traj, "y")


def test_interrupted_append_is_invisible_and_replaced(tmp_path, h2_traj):
    st = TrajectoryStore(tmp_path / "r.zarr", mode="a")
    g = st.root.create_group("trajectories/half")  # what a killed writer leaves behind
    g.create_array("density", shape=(3, 1, 4, 4), dtype="complex64")
    assert "half" not in st and len(st) == 0
    st.append(h2_traj, "half")
    assert TrajectoryStore(tmp_path / "r.zarr").read("half").n_steps == 40


def test_windows_read_and_collate(store):
    ids = TrajectoryStore(store).ids()
    reader = WindowReader(store, 7, ids=ids)
    batch = collate_windows([reader.sample("h2-0", 3), reader.sample("h2o-1", FIRST_START), reader.sample("h2p-2", 5)])
    assert batch.rho.shape == (3, 9, 2, 13, 13) and batch.horizon == 7
    assert batch.basis_mask.sum(1).tolist() == [4, 13, 2]
    ne = torch.einsum("btsij,bji->bt", batch.rho.to(torch.complex128), batch.overlap.to(torch.complex128)).real
    np.testing.assert_allclose(ne.numpy(), np.array([[2.0], [10.0], [1.0]]) * np.ones((1, 9)), atol=1e-5)
    assert torch.equal(batch.overlap[0, 4:, 4:], torch.eye(9, dtype=torch.float64))
    # one convention for the previous frame: frame start-1, then ρ(t0) = frame start, then the targets
    full = TrajectoryStore(store).read("h2-0").density  # [T+1, 1, nbf, nbf]
    half = torch.from_numpy(0.5 * full.astype(np.complex64))
    assert torch.equal(batch.prev[0, 0, :4, :4], half[2, 0]) and torch.equal(batch.initial[0, 0, :4, :4], half[3, 0])
    assert torch.equal(batch.targets[0, :, 0, :4, :4], half[4:11, 0])
    assert torch.equal(batch.inputs[0, :, 0, :4, :4], half[3:10, 0]) and batch.window_field.shape == (3, 8, 3)
    assert batch.dt > 0
    with pytest.raises(DataError, match="window start"):
        reader.sample("h2-0", 1)  # its previous frame would be frame 0, before a kick at dt/2
    assert {split_of(f"t{i}", 0) for i in range(50)} == {"train", "val", "test"}


def test_radius_graph_matches_brute_force():
    pos = torch.randn(12, 3, dtype=torch.float64) * 2
    batch = torch.tensor([0] * 5 + [1] * 7)
    ei = radius_graph(pos, 2.5, batch)
    want = {(j, i) for i in range(12) for j in range(12)
            if i != j and batch[i] == batch[j] and (pos[i] - pos[j]).norm() < 2.5}
    assert set(map(tuple, ei.t().tolist())) == want


@pytest.mark.integration
def test_generate_with_ray_is_resumable_and_cli_inspects(tmp_path, capsys):
    out = str(tmp_path / "gen.zarr")
    cfg = GenerateConfig(out=out, molecules=["h2", "hehp"], fields=["kick", "pulse"], n_geometries=2, steps=12,
                         basis="sto-3g", num_cpus=2, progress=False)
    first = generate(GenerateConfig(**{**cfg.__dict__, "molecules": ["h2"]}))
    assert first["generated"] == 4 and not first["failed"]
    again = generate(cfg)  # a restarted run only does what is missing
    assert again["already_present"] == 4 and again["generated"] == 4
    st = TrajectoryStore(out)
    assert len(st) == 8 and len(set(st.ids())) == 8
    g1 = st.static("hehp-g001-kick0")["positions"]
    assert not np.allclose(g1, st.static("hehp-g000-kick0")["positions"])  # sampled geometry differs
    assert main(["inspect", out, "--verify"]) == 0
    assert "hehp" in capsys.readouterr().out


def test_cli_generate_serial_convert_and_errors(tmp_path, h2o_traj, capsys):
    from rtml.datasets.formats.hdf5 import write_hdf5

    out = str(tmp_path / "c.zarr")
    assert main(["generate", "--out", out, "--molecules", "h2p", "--fields", "sine", "--n-geometries", "1",
                 "--steps", "6", "--basis", "sto-3g", "--executor", "serial"]) == 0
    h5 = write_hdf5(h2o_traj, tmp_path / "h2o_case.h5")
    assert main(["convert", "--out", out, "--hdf5", str(h5)]) == 0
    assert TrajectoryStore(out).ids() == ["h2p-g000-sine0", "h2o_case"]
    assert main(["generate", "--out", out, "--molecules", "xe2"]) == 2
    assert "field 'molecule'" in capsys.readouterr().err
    for flag in ("--n-geometries", "--n-fields", "--steps"):  # 0 used to plan nothing and exit 0
        assert main(["generate", "--out", out, "--molecules", "h2p", flag, "0", "--executor", "serial"]) == 2
        assert f"field '{flag}'" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "nope.zarr")]) == 2


def test_trajectories_too_short_for_the_horizon_are_named_not_silently_dropped(tmp_path, h2_traj, h2o_traj):
    from rtml.datasets.windows import WindowReader

    path = tmp_path / "lengths.zarr"
    with TrajectoryStore(path, mode="w") as st:
        st.append(h2_traj, "long")  # 40 frames
        st.append(h2o_traj, "short")  # 20 frames
    with pytest.warns(UserWarning, match=r"1 of 2 trajectories .* left out \(e.g. short\)"):
        reader = WindowReader(str(path), 25)
    assert reader.too_short == ["short"] and [e["id"] for e in reader.entries] == ["long"]
