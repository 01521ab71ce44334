"""`rtml generate` loses nothing and reuses nothing silently (issue 25): parameters recorded per trajectory and
checked on resume, Ray tasks whose worker dies are retried or reported while the rest is written, SCF
non-convergence named by molecule and geometry, trajectories the store cannot take kept on disk, ids validated."""

import functools
import os
import signal
import threading
import time

import psutil
import pytest

from rtml.datasets import generate as gen
from rtml.datasets.errors import DataError
from rtml.datasets.generate import GenerateConfig, generate
from rtml.datasets.store.zarr_store import StoreBusyError, TrajectoryStore

TINY = {"molecules": ["h2"], "fields": ["kick"], "n_geometries": 1, "steps": 6, "basis": "sto-3g",
        "executor": "serial", "progress": False}


def test_resume_with_other_parameters_is_refused_naming_both(tmp_path):
    out = str(tmp_path / "g.zarr")
    assert generate(GenerateConfig(out=out, **TINY))["generated"] == 1
    assert TrajectoryStore(out).entry("h2-g000-kick0")["generation"]["seed"] == 0
    for change, words in (({"seed": 1}, ("seed=1", "seed=0")), ({"dt": 0.1}, ("dt=0.1", "dt=0.2")),
                          ({"basis": "6-31g"}, ("'6-31g'", "'sto-3g'")), ({"steps": 8}, ("steps=8", "steps=6"))):
        with pytest.raises(DataError, match="generation parameters") as err:
            generate(GenerateConfig(out=out, **{**TINY, **change}))
        assert all(w in str(err.value) for w in words), str(err.value)
    again = generate(GenerateConfig(out=out, **{**TINY, "basis": "STO-3G"}))  # the same parameters: resumes
    assert again["already_present"] == 1 and again["generated"] == 0


def test_scf_non_convergence_names_molecule_and_geometry(tmp_path, monkeypatch):
    monkeypatch.setattr(gen, "SystemConfig", functools.partial(gen.SystemConfig, scf_max_cycle=1))
    out = str(tmp_path / "scf.zarr")
    report = generate(GenerateConfig(out=out, **{**TINY, "molecules": ["h2o"], "basis": "6-31g"}))
    (msg,) = report["failed"].values()
    assert "SCF did not converge" in msg and "molecule h2o, geometry 0" in msg and report["generated"] == 0


def test_ids_are_validated(tmp_path, h2_traj):
    with TrajectoryStore(tmp_path / "ids.zarr", mode="w") as st:
        for bad in ("a/b", "../x", ".hidden", "", "sp ace", "x" * 201):
            with pytest.raises(DataError, match="trajectory id"):
                st.append(h2_traj, bad)
        st.append(h2_traj, "h2_ok-1.v2")
        assert st.ids() == ["h2_ok-1.v2"]


def test_trajectories_the_store_refuses_are_kept_on_disk(tmp_path, monkeypatch):
    """The writer lease is lost after the first append: later trajectories go to <out>.unwritten/ as HDF5, and
    `rtml convert` puts them into the store afterwards."""
    from rtml.cli.main import main

    real, calls = TrajectoryStore.append, []

    def append(self, traj, traj_id, **extra):
        calls.append(traj_id)
        if len(calls) > 1:
            raise StoreBusyError(self.path, "writer", "no other writer", "held by another host")
        return real(self, traj, traj_id, **extra)

    monkeypatch.setattr(TrajectoryStore, "append", append)
    out = str(tmp_path / "lease.zarr")
    report = generate(GenerateConfig(out=out, **{**TINY, "fields": ["kick", "pulse", "sine"]}))
    assert report["generated"] == 1 and not report["failed"]
    u = report["unwritten"]
    assert u["ids"] == ["h2-g000-pulse0", "h2-g000-sine0"] and "held by another host" in u["store_lost"][0]
    assert sorted(os.listdir(u["dir"])) == ["h2-g000-pulse0.h5", "h2-g000-sine0.h5"]
    monkeypatch.setattr(TrajectoryStore, "append", real)
    files = [os.path.join(u["dir"], f) for f in sorted(os.listdir(u["dir"]))]
    assert main(["convert", "--out", out, "--hdf5", *files]) == 0
    assert sorted(TrajectoryStore(out).ids()) == ["h2-g000-kick0", "h2-g000-pulse0", "h2-g000-sine0"]


def _kill_first_task_worker(stop: threading.Event, killed: list) -> None:
    """SIGKILL the first Ray worker seen running ``run_task`` (as the OOM killer or a lost node would)."""
    while not stop.is_set():
        for p in psutil.process_iter(["pid", "cmdline"]):
            if any("ray::run_task" in c for c in (p.info["cmdline"] or [])):
                time.sleep(0.5)  # mid-task
                os.kill(p.info["pid"], signal.SIGKILL)
                killed.append(p.info["pid"])
                return
        time.sleep(0.05)


@pytest.mark.integration
@pytest.mark.timeout(600)
@pytest.mark.parametrize("retries", [1, 0])
def test_a_dead_ray_worker_is_retried_or_reported_and_the_rest_written(tmp_path, retries):
    import ray

    ray.shutdown()  # a Ray left by an earlier test (generate starts one and keeps it for the process)
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        stop, killed = threading.Event(), []
        watcher = threading.Thread(target=_kill_first_task_worker, args=(stop, killed), daemon=True)
        watcher.start()
        out = str(tmp_path / "ray.zarr")
        report = generate(GenerateConfig(out=out, molecules=["h2o"], fields=["kick", "pulse", "sine"],
                                         n_geometries=1, steps=60, executor="ray", retries=retries, progress=False))
        stop.set()
    finally:
        ray.shutdown()
    assert killed, "no task worker was seen"
    ids = TrajectoryStore(out).ids()
    if retries:
        assert report["generated"] == 3 and not report["failed"] and len(ids) == 3
    else:
        assert len(report["failed"]) == 1 and report["generated"] == 2 and len(ids) == 2
        (why,) = report["failed"].values()
        assert "died" in why.lower() or "crash" in why.lower() or "exit" in why.lower(), why
