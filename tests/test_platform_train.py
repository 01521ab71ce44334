"""Ray Train + DeepSpeed training end to end on 2 local CPU workers (each test starts real Ray workers)."""

import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import torch
from mlflow.tracking import MlflowClient
from platform_helpers import runs_named, tiny_config

from rtml.datasets.errors import DataError
from rtml.platform.train.driver import run
from rtml.platform.workers.launch import NonFiniteLossError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600), pytest.mark.usefixtures("local_ray")]


def test_train_zero2_logs_everything_and_exports_a_plain_model(tmp_path, small_store, heldout_store):
    cfg = tiny_config(tmp_path, small_store, heldout_store, name="e2e", max_steps=20)
    cfg.deepspeed.zero_stage = 2
    summary = run(cfg)
    assert summary["final"]["step"] == 20 and summary["final"]["checkpoint"]
    uri = cfg.tracking.uri
    (r,) = runs_named(uri, "e2e")
    assert r.info.status == "FINISHED"
    m = r.data.metrics
    for key in ("train/loss", "train/reconstruction", "train/trace", "train/windows_per_s", "train/max_violation",
                "val_loss", "val_mse_ratio", "eval/model/dipole_nrmse", "eval/trivial/dipole_nrmse",
                "eval/model/spectrum_overlap", "eval/model/steps_to_violation"):
        assert key in m, key
    assert r.data.params["deepspeed.zero_stage"] == "2" and r.data.tags["rtml.git_commit"]
    assert "version.deepspeed" in r.data.tags
    arts = {a.path for a in MlflowClient(uri).list_artifacts(r.info.run_id)}
    assert {"config.yaml", "model.pt", "dipole.png", "spectrum.png", "summary.json"} <= arts
    blob = torch.load(os.path.join(cfg.out, "model.pt"), weights_only=True)
    assert blob["format"] == "rtml-surrogate"
    # the workers' files reached the driver through MLflow (rank 0's node-local scratch is removed): cluster-safe
    assert summary["model"] == os.path.join(os.path.realpath(cfg.out), "model.pt")
    assert summary["plots"] and all(os.path.isfile(p) and "/plots/" in p for p in summary["plots"])
    assert 0 < summary["rollout"]["model/dipole_nrmse"] < 10  # finite, and not a copy of the reference
    # model selection by held-out rollouts: the score curve is in MLflow, the export names its step
    assert {"select/score", "select/best_score", "select/best_step"} <= set(m)
    sel = summary["selected"]
    assert sel["step"] in (0, 10, 20) and sel["score"] == m["select/best_score"]
    history = MlflowClient(uri).get_metric_history(r.info.run_id, "select/score")
    assert sorted(h.step for h in history) == [0, 10, 20]  # the starting weights (the anchor) are a candidate
    assert blob["meta"]["selected"] == sel
    assert {r["tier"] for r in summary["regimes"]["rows"]} <= {"weak", "moderate", "strong"}
    assert not glob.glob(os.path.join(tempfile.gettempdir(), "rtml-e2e-*"))
    import mlflow.artifacts
    import mlflow.pyfunc

    from rtml.platform.modelio import load_model

    mlflow.set_tracking_uri(uri)
    logged = mlflow.pyfunc.load_model(f"runs:/{r.info.run_id}/model").unwrap_python_model().model
    local = mlflow.artifacts.download_artifacts(f"runs:/{r.info.run_id}/model")
    model_files = {os.path.basename(p) for _, _, f in os.walk(local) for p in f}
    assert {"model.pt", "pyfunc.py", "MLmodel"} <= model_files
    assert not any(p.endswith((".pkl", ".pickle")) for p in model_files)  # models from code + weights-only model.pt
    plain = load_model(cfg.out)
    assert torch.equal(next(iter(load_model(f"runs:/{r.info.run_id}/model", tracking_uri=uri).state_dict().values())),
                       next(iter(plain.state_dict().values())))
    from rtml.platform.modelio import ModelFileError

    with pytest.raises(ModelFileError, match="not found"):
        load_model("runs:/0123456789abcdef/model", tracking_uri=uri)
    for (k, a), b in zip(plain.state_dict().items(), logged.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_nan_loss_or_gradient_stops_with_last_good_checkpoint(where, tmp_path, small_store, heldout_store):
    """A NaN loss, or a finite loss with NaN gradients, stops every rank before the optimiser step."""
    cfg = tiny_config(tmp_path, small_store, heldout_store, name="nan", max_steps=30, checkpoint_every=5,
                      eval_every=5, nan_at_step=12)
    cfg.loop.nan_in = where
    what = "the loss" if where == "loss" else "a gradient"
    with pytest.raises(NonFiniteLossError, match=rf"{what} became NaN.*step 12.*step 10\)") as err:
        run(cfg)
    ckpt = str(err.value).rsplit(": ", 1)[-1]
    assert os.path.isdir(ckpt) and any(n.endswith("model_states.pt") for _, _, f in os.walk(ckpt) for n in f)
    (r,) = runs_named(cfg.tracking.uri, "nan")
    assert r.info.status == "FAILED" and r.data.tags["rtml.status"] == f"nan_{where}"
    assert not os.path.exists(os.path.join(cfg.out, "nan_loss.json"))  # status travels through MLflow only


def test_bad_inputs_fail_before_training(tmp_path, small_store, heldout_store):
    cfg = tiny_config(tmp_path, str(tmp_path / "missing.zarr"), heldout_store, name="bad")
    with pytest.raises(DataError, match="missing.zarr"):
        run(cfg)
    import shutil

    import zarr

    wrong = tmp_path / "v99.zarr"
    shutil.copytree(small_store, wrong)
    g = zarr.open_group(str(wrong), mode="a")
    info = dict(g.attrs["rtml_store"])
    info["schema_version"] = 99
    g.attrs["rtml_store"] = info
    with pytest.raises(DataError, match="schema_version"):
        run(tiny_config(tmp_path, str(wrong), heldout_store, name="bad2"))
    from rtml.platform.tracking import TrackingError

    cfg = tiny_config(tmp_path, small_store, heldout_store, name="bad3")
    cfg.tracking.uri = "http://127.0.0.1:9"
    with pytest.raises(TrackingError, match="unreachable"):
        run(cfg)


def test_killed_worker_recovers_from_last_checkpoint(tmp_path, small_store, heldout_store):
    """SIGKILL rank 1 mid-run (a separate `rtml train` process): Ray restarts the worker group from the last
    checkpoint, the run finishes, at most one checkpoint interval is redone, and MLflow has one run.

    The kill comes once Ray Train's controller has registered a checkpoint (its ``checkpoint_manager_snapshot.json``
    in storage lists it: the controller collects reported checkpoints when it polls the workers, every 2 s, so a
    fixed delay after the worker's report raced it under load) and while rank 1 is inside the next interval."""
    every, uri = 40, f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = [sys.executable, "-m", "rtml.cli.main", "train", "debug", "--data.store", small_store,
           "--data.val-store", heldout_store, "--data.horizons", "16", "--data.batch-size", "4",
           "--data.val-windows", "2", "--eval.max-trajectories", "1", "--eval.max-steps", "8", "--name", "ft",
           "--out", str(tmp_path / "ft"), "--storage", str(tmp_path / "ray"), "--tracking.uri", uri,
           "--loop.max-steps", str(3 * every), "--loop.checkpoint-every", str(every), "--loop.eval-every", str(every),
           "--scaling.max-failures", "2"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    progress = tmp_path / "ft" / "progress" / "rank1.json"
    snapshot = tmp_path / "ray" / "ft" / "checkpoint_manager_snapshot.json"
    killed_at, registered = None, None
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            info = json.loads(progress.read_text())
            latest = json.loads(snapshot.read_text()).get("latest_checkpoint_result") or {}
        except (FileNotFoundError, json.JSONDecodeError):
            time.sleep(0.02)
            continue
        registered = int(latest.get("metrics", {}).get("step", 0))
        if registered >= every and registered < info["step"] < registered + every:
            os.kill(info["pid"], signal.SIGKILL)
            killed_at = info["step"]
            break
        time.sleep(0.02)
    out, _ = proc.communicate(timeout=400)
    assert killed_at is not None, out[-3000:]
    assert proc.returncode == 0, out[-3000:]
    (r,) = runs_named(uri, "ft")  # one MLflow run, not two
    assert r.info.status == "FINISHED"
    resumed = MlflowClient(uri).get_metric_history(r.info.run_id, "resumed_from_step")
    assert resumed, "the run did not resume from a checkpoint"
    lost = killed_at - resumed[-1].value
    assert resumed[-1].value == registered and 0 < lost < every, (killed_at, registered, resumed[-1].value)
    final = json.loads((tmp_path / "ft" / "summary.json").read_text())
    assert final["final"]["step"] == 3 * every
