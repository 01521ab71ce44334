"""The store at cluster scale: an index whose cost does not grow with the store, verified checksums, one writer at
a time (flock locally, a lease on object stores), batched window reads, and object-store URLs (S3 via moto)."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from rtml.datasets.errors import DataError
from rtml.datasets.store.index import CHUNK, StoreIndex
from rtml.datasets.store.writer_lock import StoreBusyError
from rtml.datasets.store.zarr_store import TrajectoryStore
from rtml.datasets.windows import WindowReader


def _entry(i: int) -> dict:
    return {"id": f"t{i:05d}", "molecule": "h2", "nbf": 4, "n_spin": 1, "n_steps": 10, "dt": 0.2,
            "checksum_density": f"{i:064x}"}


@pytest.fixture(scope="module")
def big_index(tmp_path_factory):
    """A store whose index holds 2,000 entries (index only: the arrays are irrelevant to its cost)."""
    path = tmp_path_factory.mktemp("idx") / "big.zarr"
    st = TrajectoryStore(path, mode="w")
    for i in range(2000):
        st._index.append(_entry(i))
    st.close()
    return path


def test_open_reads_no_index_and_lookups_are_dict_lookups(big_index, monkeypatch):
    calls = []
    real = StoreIndex._array
    monkeypatch.setattr(StoreIndex, "_array", lambda self, mode="r": calls.append(mode) or real(self, mode))
    st = TrajectoryStore(big_index)  # opening: root metadata only
    assert calls == []
    assert st.entry("t01999")["checksum_density"] == f"{1999:064x}"  # first lookup reads the index once
    assert len(calls) == 1
    for i in range(0, 2000, 7):
        assert st.entry(f"t{i:05d}")["id"] == f"t{i:05d}" and f"t{i:05d}" in st
    assert len(calls) == 1  # ... then no I/O for known ids
    assert len(st) == 2000 and st.ids()[:2] == ["t00000", "t00001"]


def test_append_rewrites_one_chunk_whatever_the_size(big_index, tmp_path):
    """An append writes the array metadata and the chunk holding the new slot: the same with 2,000 entries as
    with 2 (the schema-2 index rewrote the whole list, O(n) per append, O(n²) to build a store)."""
    def changed_files(path, n_before):
        st = TrajectoryStore(path, mode="a")
        files = {f: f.stat().st_mtime_ns for f in Path(path, "index").rglob("*") if f.is_file()}
        os.sync()
        st._index.append(_entry(n_before))
        st.close()
        after = {f: f.stat().st_mtime_ns for f in Path(path, "index").rglob("*") if f.is_file()}
        return {f.relative_to(path).as_posix() for f in after if files.get(f) != after[f]}, len(after)

    small = tmp_path / "small.zarr"
    st = TrajectoryStore(small, mode="w")
    for i in range(2):
        st._index.append(_entry(i))
    st.close()
    big = tmp_path / "big.zarr"
    shutil.copytree(big_index, big)
    few, n_files_small = changed_files(small, 2)
    many, n_files_big = changed_files(big, 2000)
    assert n_files_big == 2 + -(-2001 // CHUNK) and n_files_small == 3  # group + array metadata + chunks
    assert few == {"index/entries/zarr.json", "index/entries/c/0"}
    assert many == {"index/entries/zarr.json", f"index/entries/c/{2000 // CHUNK}"}


def test_schema2_index_reads_and_moves_to_the_array_on_append(tmp_path, h2_traj):
    st = TrajectoryStore(tmp_path / "old.zarr", mode="w")
    st.append(h2_traj, "a")
    st.close()
    root = zarr.open_group(str(tmp_path / "old.zarr"), mode="a")  # rewrite it as a schema-2 store
    del root["index"]
    info = dict(root.attrs["rtml_store"])
    root.attrs["rtml_store"] = {**info, "schema_version": 2, "index": [st.entry("a")]}
    old = TrajectoryStore(tmp_path / "old.zarr", mode="a")
    assert old.ids() == ["a"] and old.read("a").n_steps == 40
    old.append(h2_traj, "b")
    info = TrajectoryStore(tmp_path / "old.zarr").root.attrs["rtml_store"]
    assert "index" not in info and info["schema_version"] == 3
    assert TrajectoryStore(tmp_path / "old.zarr").ids() == ["a", "b"]


def test_unfinished_commit_is_skipped(tmp_path):
    st = TrajectoryStore(tmp_path / "s.zarr", mode="w")
    st._index.append(_entry(0))
    arr = zarr.open_array(str(tmp_path / "s.zarr"), path="index/entries", mode="r+")
    arr.resize((2,))  # a writer died between growing the index and writing its slot
    st._index.append(_entry(2))
    assert TrajectoryStore(tmp_path / "s.zarr").ids() == ["t00000", "t00002"]


@pytest.mark.parametrize("name", ["density", "dipole", "xc_potential"])
def test_every_checksum_is_verified(tmp_path, h2_traj, name):
    assert h2_traj.xc_potential is not None
    st = TrajectoryStore(tmp_path / "c.zarr", mode="w", precision="float64")
    st.append(h2_traj, "h2")
    assert {"checksum_density", "checksum_dipole", "checksum_xc_potential"} <= set(st.entry("h2"))
    arr = zarr.open_array(str(tmp_path / "c.zarr"), path=f"trajectories/h2/{name}", mode="r+")
    values = np.asarray(arr[:])
    values[5] = values[5] * (1 + 1e-6)  # decodes fine, passes every physics check: only the checksum sees it
    arr[:] = values
    with pytest.raises(DataError, match=f"h2/{name}.*index checksum"):
        TrajectoryStore(tmp_path / "c.zarr").read("h2")
    problems = TrajectoryStore(tmp_path / "c.zarr").verify()
    assert len(problems) == 1 and name in problems[0]


def _append_many(path, offset, traj_file, q):
    from rtml.datasets.formats.hdf5 import read_hdf5

    traj = read_hdf5(traj_file)
    st = TrajectoryStore(path, mode="a")
    for k in range(6):
        st.append(traj, f"w{offset}-{k}")
    q.put(offset)


@pytest.mark.integration  # writers in several processes / an S3 server (moto)
def test_local_writers_in_two_processes_take_turns(tmp_path, h2_traj):
    from rtml.datasets.formats.hdf5 import write_hdf5

    write_hdf5(h2_traj, tmp_path / "h2.h5")
    path = tmp_path / "shared.zarr"
    TrajectoryStore(path, mode="w").close()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_append_many, args=(str(path), o, str(tmp_path / "h2.h5"), q)) for o in (0, 1)]
    for p in procs:
        p.start()
    assert sorted(q.get(timeout=300) for _ in procs) == [0, 1]
    for p in procs:
        p.join()
    st = TrajectoryStore(path)
    assert sorted(st.ids()) == sorted(f"w{o}-{k}" for o in (0, 1) for k in range(6))
    assert not st.verify()


def test_object_store_has_one_writer(h2_traj):
    url = "memory://rtml-test/lease.zarr"
    st = TrajectoryStore(url, mode="w")
    st.append(h2_traj, "a")
    with pytest.raises(StoreBusyError, match="writer.*held by"):
        TrajectoryStore(url, mode="a")
    reader = TrajectoryStore(url)  # readers are never blocked
    assert reader.ids() == ["a"]
    # a writer that lost its lease (e.g. taken over after it stalled past the TTL) stops before committing
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    with fs.open(f"{root}/.rtml_writer.json", "wb") as fh:
        fh.write(json.dumps({"token": "other", "host": "elsewhere", "pid": 1, "since": 0,
                             "renewed": 1e18}).encode())
    with pytest.raises(StoreBusyError, match="elsewhere"):
        st.append(h2_traj, "b")
    assert "b" not in TrajectoryStore(url)
    fs.rm(f"{root}/.rtml_writer.json")
    st.close()
    with TrajectoryStore(url, mode="a") as again:  # released: the next writer gets it
        again.append(h2_traj, "b")
    assert TrajectoryStore(url).ids() == ["a", "b"]
    with pytest.raises(DataError, match="closed"):
        again.append(h2_traj, "c")


def test_window_reads_equal_array_slices(tmp_path, h2_traj, h2o_traj):
    st = TrajectoryStore(tmp_path / "w.zarr", mode="w", chunk_steps=8, shard_steps=16)
    st.append(h2_traj, "h2")
    st.append(h2o_traj, "h2o")
    rng = np.random.default_rng(0)
    for cache_bytes in (0, 20_000, 10**9):  # no cache, evicting, everything cached
        r = TrajectoryStore(tmp_path / "w.zarr", cache_bytes=cache_bytes)
        reqs = []
        for _ in range(40):
            tid = ["h2", "h2o"][rng.integers(2)]
            n = r.entry(tid)["n_steps"]
            a = int(rng.integers(0, n - 1))
            reqs.append((tid, ["density", "xc_potential"][rng.integers(2)], a, int(rng.integers(a, n + 1))))
        for _ in range(2):  # the second pass is served from the cache where it holds the chunks
            got = r.read_windows(reqs)
            for (tid, name, a, b), arr in zip(reqs, got):
                np.testing.assert_array_equal(arr, r.read_array(tid, name, slice(a, b)))
        assert (r._reads.cache.hits > 0) == (cache_bytes > 0)
        got[0][...] = 0  # a window is the caller's: writing into it leaves the cached chunks intact
        np.testing.assert_array_equal(r.read_windows(reqs[:1])[0], r.read_array(*reqs[0][:2], slice(*reqs[0][2:])))


@pytest.fixture(scope="module")
def s3():
    """A local S3-compatible server (moto) and credentials for it, for the tests of this module."""
    pytest.importorskip("s3fs")
    from moto.server import ThreadedMotoServer

    srv = ThreadedMotoServer(port=0, verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import boto3

    boto3.client("s3").create_bucket(Bucket="rtml")
    yield "s3://rtml"
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    srv.stop()


@pytest.mark.integration  # writers in several processes / an S3 server (moto)
def test_s3_store_round_trip_windows_and_lease(s3, h2_traj, h2o_traj):
    url = f"{s3}/train.zarr"
    with TrajectoryStore(url, mode="w", precision="float64") as st:
        st.append(h2_traj, "h2")
        st.append(dataclasses.replace(h2o_traj, meta={**h2o_traj.meta}), "h2o")
        with pytest.raises(StoreBusyError):
            TrajectoryStore(url, mode="a")
    r = TrajectoryStore(url)
    assert r.ids() == ["h2", "h2o"] and not r.verify()
    np.testing.assert_array_equal(r.read("h2").density, h2_traj.density)
    reader = WindowReader(url, 8, ids=["h2", "h2o"], xc_potential=True)
    (w,) = reader.sample_many([("h2", 3, 8)])
    np.testing.assert_array_equal(w["rho"], h2_traj.density[2:12])
    np.testing.assert_array_equal(w["xc_potential"], h2_traj.xc_potential[2:12])
    with TrajectoryStore(url, mode="a") as again:  # the first writer released its lease on exit
        assert len(again) == 2



def _race(url: str, n: int, ttl_s: float | None = None) -> tuple[list, list]:
    """``n`` threads open ``url`` for writing at the same instant -> (winners' leases, refusals)."""
    import threading

    from rtml.datasets.store.writer_lock import RemoteLease

    barrier, won, refused = threading.Barrier(n), [], []

    def one():
        barrier.wait()
        try:
            won.append(RemoteLease(url, **({"ttl_s": ttl_s} if ttl_s else {})))
        except StoreBusyError as exc:
            refused.append(exc)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won, refused


@pytest.mark.integration  # writers in several processes / an S3 server (moto)
@pytest.mark.parametrize("backend", ["s3", "memory"])
def test_racing_writers_exactly_one_wins(backend, request):
    """Conditional writes (S3 If-None-Match / If-Match): of 8 writers racing for a free store, or for a dead
    writer's expired lease, exactly one wins — every round (the old write-sleep-reread lease let two win)."""
    base = request.getfixturevalue("s3") if backend == "s3" else "memory://rtml-race"
    for round_ in range(5):
        url = f"{base}/race{round_}.zarr"
        won, refused = _race(url, 8)
        assert len(won) == 1 and len(refused) == 7, (len(won), [str(e) for e in refused])
        dead = won[0]
        dead._stop.set()  # its process froze: no more renewals
        dead.ttl_s = 0.3
        import time

        time.sleep(0.5)
        won2, refused2 = _race(url, 8, ttl_s=0.3)  # the expired lease: one taker
        assert len(won2) == 1 and len(refused2) == 7
        with pytest.raises(StoreBusyError, match="held by"):
            dead.check()  # the frozen writer, waking up, stops before committing
        won2[0].close()
        dead.close()  # releases nothing: the lease is not its any more
        assert won2[0].obj.read()[0] is None


@pytest.mark.integration  # writers in several processes / an S3 server (moto)
def test_lease_is_renewed_by_its_timer_and_released(s3, h2_traj):
    """A writer idle for 3× the TTL keeps its store (the timer renews it); close() lets the next writer in."""
    import time

    from rtml.datasets.store import writer_lock

    url = f"{s3}/timer.zarr"
    st = TrajectoryStore(url, mode="w")
    st._writer.close()  # swap in a short-TTL lease to watch the timer work
    st._writer = writer_lock.RemoteLease(url, ttl_s=0.6)
    time.sleep(1.8)
    with pytest.raises(StoreBusyError, match="renewed 0 s ago"):
        writer_lock.RemoteLease(url, ttl_s=0.6)
    st.append(h2_traj, "h2")  # still ours
    st.close()
    with TrajectoryStore(url, mode="a") as again:
        assert again.ids() == ["h2"]


@pytest.mark.integration  # writers in several processes / an S3 server (moto)
def test_mode_w_does_not_wipe_a_store_another_writer_holds(s3, tmp_path, h2_traj):
    for url in (f"{s3}/wipe.zarr", "memory://rtml-wipe/w.zarr"):
        with TrajectoryStore(url, mode="w") as st:
            st.append(h2_traj, "keep")
            with pytest.raises(StoreBusyError):
                TrajectoryStore(url, mode="w")
            assert TrajectoryStore(url).ids() == ["keep"]
        with TrajectoryStore(url, mode="w") as fresh:  # free again: 'w' starts over
            assert len(fresh) == 0


def test_a_reader_does_not_miss_an_entry_committed_after_it_saw_the_slot_empty(tmp_path):
    root = zarr.open_group(str(tmp_path / "idx.zarr"), mode="w")
    writer, reader = StoreIndex(str(tmp_path / "idx.zarr"), root), StoreIndex(str(tmp_path / "idx.zarr"), root)
    writer.append(_entry(0))
    arr = root["index/entries"]
    arr.resize((2,))  # a commit in flight: the slot exists, its entry is not written yet
    assert list(reader.entries()) == ["t00000"]
    arr[1] = json.dumps(_entry(1))  # ... and now it is
    assert list(reader.entries()) == ["t00000", "t00001"]
