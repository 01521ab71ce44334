"""`ray job submit` against a real local Ray head (needs ray[default] for the job server), and a Tune sweep."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from platform_helpers import runs_named

pytestmark = pytest.mark.integration  # a real Ray head, job submission, a Tune sweep

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ray_job_submit_debug_training(tmp_path, small_store, heldout_store):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    gcs, dash = _free_port(), _free_port()
    start = subprocess.run([str(BIN / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(gcs),
                            "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash), "--num-cpus", "2",
                            "--include-dashboard", "true", "--disable-usage-stats"],
                           check=False, env=env, capture_output=True, text=True, timeout=180)
    assert start.returncode == 0, start.stdout + start.stderr
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    try:
        job = subprocess.run(
            [str(BIN / "ray"), "job", "submit", "--address", f"http://127.0.0.1:{dash}", "--",
             str(BIN / "rtml"), "train", "debug", "--data.store", small_store, "--data.val-store", heldout_store,
             "--data.horizons", "4", "8", "--data.batch-size", "2", "--loop.max-steps", "10",
             "--loop.checkpoint-every", "5", "--loop.eval-every", "5", "--eval.max-trajectories", "1",
             "--eval.max-steps", "8", "--name", "job", "--out", str(tmp_path / "job"), "--storage",
             str(tmp_path / "ray"), "--tracking.uri", uri],
            check=False, env=env, capture_output=True, text=True, timeout=600)
        assert job.returncode == 0 and "succeeded" in job.stdout, (job.stdout + job.stderr)[-4000:]
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], check=False, env=env, capture_output=True, timeout=120)
    (r,) = runs_named(uri, "job")
    assert r.info.status == "FINISHED" and "train/loss" in r.data.metrics and "val_loss" in r.data.metrics
    assert "model" in {a.path for a in MlflowClient(uri).list_artifacts(r.info.run_id)} or \
        MlflowClient(uri).search_logged_models([r.info.experiment_id])


@pytest.mark.timeout(900)
def test_tune_debug_sweep_nests_trials_and_resumes(tmp_path, small_store, heldout_store):
    """Two trials (grid over lr) under one parent run; re-running the finished sweep restores it, adds nothing."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = [str(BIN / "rtml"), "tune", "debug", "--train.data.store", small_store, "--train.data.val-store",
           heldout_store, "--train.data.horizons", "4", "8", "--train.data.batch-size", "2", "--name", "sw",
           "--storage", str(tmp_path / "tune"), "--tracking-uri", uri]
    first = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=800)
    assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
    summary = json.loads((tmp_path / "tune" / "sw" / "rtml_summary.json").read_text())
    assert summary["trials"] == 2 and summary["errors"] == 0 and "optim.lr" in summary["best_params"]
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("rtml-sweeps")
    parents = c.search_runs([exp.experiment_id], filter_string="tags.`rtml.sweep` = 'sw'")
    assert len(parents) == 1 and "best.optim.lr" in parents[0].data.params
    children = c.search_runs([exp.experiment_id],
                             filter_string=f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'")
    assert len(children) == 2 and all(ch.info.run_name.startswith("sw-") for ch in children)
    again = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=800)
    assert again.returncode == 0 and "resuming sweep sw" in again.stdout, (again.stdout + again.stderr)[-3000:]
    assert len(c.search_runs([exp.experiment_id], filter_string="tags.`rtml.sweep` = 'sw'")) == 1
    assert len(c.search_runs([exp.experiment_id],
                             filter_string=f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'")) == 2
