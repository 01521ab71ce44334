"""Nothing lost at the end of training, nothing changed silently on resume (issue 25): the model reaches MLflow
before the held-out evaluation runs (a failing evaluation is reported, the model stays), files MLflow refused are
kept in the run's storage and named, and a resume with a changed config is refused or recorded as a version."""

import errno
import json
import os
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from platform_helpers import tiny_config

from rtml.models.surrogate import Surrogate
from rtml.platform.configio import ConfigError
from rtml.platform.train import export
from rtml.platform.workers import launch as driver
from rtml.platform.workers import runtime
from rtml.platform.workers.results import fetch_results

pytestmark = pytest.mark.integration  # end-of-run exports and resumes through MLflow runs


def test_a_failing_evaluation_keeps_the_logged_model(tmp_path, small_store, heldout_store, monkeypatch, capsys):
    cfg = tiny_config(tmp_path, small_store, heldout_store, name="evalfail")
    uri = cfg.tracking.uri
    run_id = driver.open_run(cfg, uri)

    def broken(*a, **k):
        raise MemoryError("the held-out rollouts ran out of memory")

    monkeypatch.setattr(export, "evaluate_store", broken)
    summary = export.export_model(Surrogate(cfg.model), cfg, tmp_path / "scratch", uri, run_id)
    assert summary["evaluation_error"] == "MemoryError: the held-out rollouts ran out of memory"
    arts = {a.path for a in MlflowClient(uri).list_artifacts(run_id)}
    assert {"model.pt", "config.yaml", "summary.json"} <= arts
    exp = MlflowClient(uri).get_run(run_id).info.experiment_id
    assert MlflowClient(uri).search_logged_models([exp])  # the MLflow model too
    assert MlflowClient(uri).get_run(run_id).data.tags[export.EVAL_TAG] == "failed"
    got = driver.finish(tmp_path / "driver", uri, run_id, {"step": 20}, 0.0)
    assert os.path.isfile(got["model"]) and got["evaluation_error"].startswith("MemoryError")
    from rtml.cli.train import report

    assert report(got) == 1 and "evaluation failed (the model is saved and logged)" in capsys.readouterr().out


@pytest.mark.parametrize("failure", [ConnectionError("MLflow tracking server unreachable"),
                                     OSError(errno.ENOSPC, "No space left on device")])
def test_files_mlflow_refused_are_kept_in_storage_and_named(failure, tmp_path):
    """MLflow down, or the worker's disk full while exporting: the files go to the run's storage, named."""
    run = runtime.WorkerRun(rank=0, world=1, local_rank=0, device=None, uri="sqlite://", run_id="r",
                            out=tmp_path, name="keep", storage=str(tmp_path / "storage"))

    def export_then_fail(scratch):
        (scratch / "model.pt").write_bytes(b"weights")
        raise failure

    with pytest.raises(runtime.ExportError, match=f"{type(failure).__name__}.*kept at") as err:
        runtime.export_from_rank0(run, export_then_fail)
    kept = str(err.value).rsplit("kept at ", 1)[1]
    assert kept.startswith(str(tmp_path / "storage" / "keep" / "export-"))
    assert Path(kept, "model.pt").read_bytes() == b"weights"


def test_resume_with_a_changed_config_is_refused_or_versioned(tmp_path, small_store, heldout_store, capsys):
    cfg = tiny_config(tmp_path, small_store, heldout_store, name="cfgv")
    uri = cfg.tracking.uri
    run_id = driver.open_run(cfg, uri)
    changed = tiny_config(tmp_path, small_store, heldout_store, name="cfgv")
    changed.optim.lr, changed.data.batch_size = 0.5, 3
    with pytest.raises(ConfigError, match=r"data.batch_size, optim.lr.*batch_size: 2 -> 3; optim.lr: .* -> 0.5"):
        driver.open_run(changed, uri)
    longer = tiny_config(tmp_path, small_store, heldout_store, name="cfgv", max_steps=40)
    assert driver.open_run(longer, uri) == run_id  # extending a run: allowed, recorded
    tags = MlflowClient(uri).get_run(run_id).data.tags
    assert tags["rtml.config_version"] == "2" and json.loads(tags["rtml.config_v2"]) == {
        "loop.max_steps": ["20", "40"]}
    assert "config version 2: loop.max_steps 20 -> 40" in capsys.readouterr().out
    assert driver.open_run(longer, uri) == run_id  # the same again: no new version
    assert MlflowClient(uri).get_run(run_id).data.tags["rtml.config_version"] == "2"


def test_fetch_results_finds_what_was_logged(tmp_path, small_store, heldout_store):
    """The driver's side of the export, on its own: artifacts come back by name (none missing is invented)."""
    cfg = tiny_config(tmp_path, small_store, heldout_store, name="fetch")
    run_id = driver.open_run(cfg, cfg.tracking.uri)
    assert fetch_results(cfg.tracking.uri, run_id, tmp_path / "o") == {}
    got = driver.finish(tmp_path / "o", cfg.tracking.uri, run_id, {}, 0.0)
    assert "no model.pt" in got["model_missing"]
