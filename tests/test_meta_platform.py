"""Meta-training on Ray Train workers (MLflow, checkpoint + resume) and ``rtml adapt`` end to end, with the bad
inputs of issue 5: a basis other than declared, k larger than available, a non-rtml model file, an unknown MLflow
URI. Tiny sizes, 2 CPU workers."""

import glob
import json
import os
import tempfile

import pytest
import torch
from mlflow.tracking import MlflowClient
from platform_helpers import runs_named

from rtml.cli import recipes
from rtml.cli.main import main
from rtml.meta.driver import run as meta_train
from rtml.platform.configio import updated
from rtml.platform.modelio import load_model

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600), pytest.mark.usefixtures("local_ray")]


def _cfg(tmp, store, steps):
    return updated(recipes.meta_debug(), {
        "tasks.store": store, "tasks.exclude": ["lih"], "tasks.horizon": 4, "learner.inner_steps": 1,
        "loop.max_steps": steps, "loop.checkpoint_every": 2, "loop.log_every": 2, "name": "meta-t",
        "out": str(tmp / "meta"), "storage": str(tmp / "ray"), "tracking.uri": f"sqlite:///{tmp / 'mlflow.db'}"})


@pytest.fixture(scope="module")
def meta_run(tmp_path_factory, small_store):
    tmp = tmp_path_factory.mktemp("meta")
    first = meta_train(_cfg(tmp, small_store, 4))
    resumed = meta_train(_cfg(tmp, small_store, 6))  # same name: resume from step 4 into the same MLflow run
    return tmp, first, resumed


def test_meta_train_logs_checkpoints_and_resumes(meta_run):
    tmp, first, resumed = meta_run
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    assert first["final"]["step"] == 4 and resumed["final"]["step"] == 6
    assert first["run_id"] == resumed["run_id"] and len(runs_named(uri, "meta-t")) == 1
    c = MlflowClient(uri)
    run = c.get_run(resumed["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["rtml.kind"] == "meta-train"
    assert run.data.params["learner.first_order"] == "True" and run.data.params["tasks.exclude"] == "['lih']"
    assert [m.step for m in c.get_metric_history(run.info.run_id, "resumed_from_step")] == [4]
    assert [m.step for m in c.get_metric_history(run.info.run_id, "meta/meta_loss")] == [2, 4, 6]
    assert any(k.startswith("inner_lr/") for k in run.data.metrics)
    # meta-gradients are averaged over the 2 ranks: their parameters stay bit-identical
    assert [m.value for m in c.get_metric_history(run.info.run_id, "meta/rank_param_spread")] == [0.0] * 3
    arts = {a.path for a in c.list_artifacts(run.info.run_id)}
    assert {"model.pt", "summary.json", "config.yaml"} <= arts
    logged = load_model(f"runs:/{run.info.run_id}/model", tracking_uri=uri)  # the MLflow pytorch model
    assert logged.rtml_meta["meta_learner"]["inner_steps"] == 1
    model = load_model(tmp / "meta" / "model.pt")
    state = model.rtml_meta["meta_learner"]
    assert state["inner_steps"] == 1 and set(state["inner_lrs"]) >= {"decoder", "coef"}
    assert model.rtml_meta["mlflow_run_id"] == resumed["run_id"]
    # results reached the driver through MLflow; rank 0's node-local scratch is gone
    assert resumed["model"] == str((tmp / "meta" / "model.pt").resolve())
    assert not glob.glob(os.path.join(tempfile.gettempdir(), "rtml-meta-t-*"))


def test_adapt_end_to_end_with_baselines_and_mlflow(meta_run, small_store, tmp_path, capsys):
    tmp, _, resumed = meta_run
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    out = tmp_path / "adapt"
    rc = main(["adapt", "--model", str(tmp / "meta" / "model.pt"), "--molecule", "lih", "--support", small_store,
               "--shots", "2", "--max-steps", "16", "--out", str(out), "--tracking-uri", uri])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "zero-shot" in text and "fine-tune" in text and "adapted" in text
    s = json.loads((out / "summary.json").read_text())
    assert len(s["support"]) == 2 and len(s["query"]) == 2 and not set(s["support"]) & set(s["query"])
    for m in ("zero_shot", "finetune", "adapted"):
        assert s["metrics"][f"{m}/dipole_nrmse"] > 0
    # the three models really differ (adaptation changed the weights; fine-tuning differently)
    assert len({round(s["metrics"][f"{m}/query_loss"], 12) for m in ("zero_shot", "finetune", "adapted")}) == 3
    run = MlflowClient(uri).get_run(s["run_id"])
    assert run.data.tags["rtml.parent_run_id"] == resumed["run_id"] and run.data.tags["rtml.kind"] == "adapt"
    assert run.data.params["k"] == "2" and "adapted/dipole_nrmse" in run.data.metrics
    assert "finetune/dipole_nrmse" in run.data.metrics and "zero_shot/spectrum_overlap" in run.data.metrics
    # the per-molecule ridge xc map, fitted on the support's recorded V_xc, is a column and a logged metric
    assert s["ridge_xc_skipped"] is None and s["metrics"]["ridge_xc/dipole_nrmse"] > 0
    assert "ridge_xc/dipole_nrmse" in run.data.metrics and "ridge xc" in text and "best on this query set" in text
    adapted = load_model(out / "adapted.pt")
    base = load_model(tmp / "meta" / "model.pt")
    assert any(not torch.equal(a, b) for a, b in zip(adapted.state_dict().values(), base.state_dict().values()))
    assert (out / "plots" / "adapt_dipole.png").stat().st_size > 0


def test_adapt_generates_support_on_the_spot(meta_run, tmp_path, capsys):
    tmp, _, _ = meta_run
    out = tmp_path / "gen"
    rc = main(["adapt", "--model", str(tmp / "meta" / "model.pt"), "--molecule", "h2", "--generate", "2",
               "--shots", "2", "--query", "1", "--frames", "30", "--max-steps", "12", "--out", str(out),
               "--tracking-uri", f"sqlite:///{tmp / 'mlflow.db'}"])
    assert rc == 0, capsys.readouterr().err
    s = json.loads((out / "summary.json").read_text())
    assert s["store"] == str(out / "support.zarr") and len(s["support"]) == 2 and len(s["query"]) == 1


def test_adapt_bad_inputs_fail_clearly(meta_run, small_store, tmp_path, capsys):
    tmp, _, _ = meta_run
    model, uri = str(tmp / "meta" / "model.pt"), f"sqlite:///{tmp / 'mlflow.db'}"
    base = ["adapt", "--molecule", "lih", "--support", small_store, "--out", str(tmp_path / "bad"),
            "--tracking-uri", uri]

    def err(*args):
        assert main([*base, *args]) == 2
        return capsys.readouterr().err

    assert "basis" in (e := err("--model", model, "--shots", "2", "--basis", "sto-3g")) and "'sto-3g'" in e \
        and "6-31g" in e.lower()
    assert "at least 10 (k=9 support" in err("--model", model, "--shots", "9")
    junk = tmp_path / "junk.pt"
    junk.write_text("not a model")
    assert "not an rtml model file" in err("--model", str(junk), "--shots", "2")
    assert "MLflow model not found" in err("--model", "runs:/0123456789abcdef/model", "--shots", "2")
    assert "trajectories of 'nh3'" in main_err(capsys, [*base[:1], "--molecule", "nh3", *base[3:], "--model",
                                                          model])


def main_err(capsys, argv):
    assert main(argv) == 2
    return capsys.readouterr().err


def test_meta_train_nan_stops_before_the_step(small_store, tmp_path):
    from rtml.platform.workers.launch import NonFiniteLossError

    cfg = _cfg(tmp_path, small_store, 4)
    cfg.name, cfg.loop.nan_at_step = "meta-nan", 3
    with pytest.raises(NonFiniteLossError, match=r"step 3.*Last good checkpoint \(step 2\)"):
        meta_train(cfg)
    runs = runs_named(f"sqlite:///{tmp_path / 'mlflow.db'}", "meta-nan")
    assert len(runs) == 1 and runs[0].info.status == "FAILED"
    assert runs[0].data.tags["rtml.status"] == "nan_loss" and runs[0].data.tags["rtml.nan_step"] == "3"
    assert not (tmp_path / "meta" / "nan_loss.json").exists()  # no node-local status file
