"""Training configuration, data stream, model files and tracking checks that need no Ray cluster."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from rtml.cli import recipes
from rtml.models.surrogate import preset
from rtml.platform.configio import ConfigError, load_file, save_yaml, to_dict, updated
from rtml.platform.modelio import ModelFileError, load_model, save_model
from rtml.platform.tracking import TrackingError, check_reachable
from rtml.platform.train.config import TrainConfig, check

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", sorted(recipes.TRAIN))
def test_recipes_are_valid_and_round_trip_through_yaml(name, tmp_path):
    """Every recipe passes the checks; its printed YAML (``--print-config``) reads back to the same config."""
    cfg = recipes.TRAIN[name]()
    check(cfg)
    assert cfg.recipe == name
    path = save_yaml(cfg, tmp_path / f"{name}.yaml")
    assert load_file(TrainConfig, path, recipes.TRAIN, check) == cfg


def test_updated_values_are_typed_and_nested():
    cfg = updated(recipes.small(), {"optim.lr": 1e-4, "data.horizons": [4, 8], "data.val_store": None,
                                    "scaling.num_workers": 1})
    assert cfg.optim.lr == 1e-4 and cfg.data.horizons == (4, 8) and cfg.scaling.num_workers == 1
    assert cfg.model == preset("small") and cfg.data.val_store is None
    assert recipes.small().optim.lr == 1e-3  # recipes are functions: nothing leaks between calls


@pytest.mark.parametrize("values, field", [
    ({"optim.lrr": 3}, "optim.lrr"),
    ({"deepspeed.zero_stage": 3}, "deepspeed.zero_stage"),
    ({"deepspeed.precision": "fp8"}, "deepspeed.precision"),
    ({"loop.max_steps": "abc"}, "loop.max_steps"),
    ({"optim.lr.x": 1}, "optim.lr.x"),
])
def test_bad_values_name_the_field(values, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        updated(recipes.debug(), values)


@pytest.mark.parametrize("values, field", [
    ({"data.horizons": [3], "model.bundle": 2}, "data.horizons"),
    ({"deepspeed.precision": "bf16"}, "deepspeed.precision"),  # bf16 autocast needs GPU workers
    ({"loop.max_steps": 0}, "loop.max_steps"),
])
def test_inconsistent_configs_are_refused(values, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        check(updated(recipes.debug(), values))


def test_yaml_files_start_from_their_recipe_and_errors_name_the_file(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("recipe: small\noptim:\n  lr: 5.0e-4\nmodel:\n  dynamics:\n    recurrent: false\n")
    cfg = load_file(TrainConfig, f, recipes.TRAIN, check)
    assert cfg.optim.lr == 5e-4 and cfg.optim.warmup_steps == 30 and cfg.model.dynamics.recurrent is False
    assert cfg.model.codec == preset("small").codec and cfg.data == recipes.small().data
    for text, field in [("recipe: small\nmodel:\n  head: huge\n", "head"),
                        ("recipe: small\nloop:\n  max_steps: 0\n", "loop.max_steps"),
                        ("recipe: gigantic\n", "recipe"),
                        ("recipe: small\nmodel:\n  preset: base\n", "model.preset")]:  # retired: named, not ignored
        f.write_text(text)
        with pytest.raises(ConfigError, match=f"{f}.*{field}"):
            load_file(TrainConfig, f, recipes.TRAIN, check)
    with pytest.raises(ConfigError, match="YAML"):
        load_file(TrainConfig, tmp_path / "missing.yaml", recipes.TRAIN, check)


def test_a_saved_run_config_with_the_retired_preset_label_loads(tmp_path):
    """Runs before the preset label was retired saved ``model.preset`` next to every model field: it is dropped."""
    data = to_dict(recipes.small())
    data["model"]["preset"] = "small"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    assert load_file(TrainConfig, tmp_path / "config.yaml", recipes.TRAIN, check) == recipes.small()


def test_config_error_survives_pickling():
    err = pickle.loads(pickle.dumps(ConfigError("f.yaml", "a.b", "x", 3)))
    assert str(err) == "f.yaml: field 'a.b': expected x, got 3"


def test_unreachable_tracking_server_fails_fast():
    with pytest.raises(TrackingError, match="unreachable"):
        check_reachable("http://127.0.0.1:9", timeout=2)


def test_model_file_roundtrip_without_deepspeed(tmp_path):
    from rtml.models.surrogate import Surrogate, preset

    torch.manual_seed(0)
    model = Surrogate(preset("debug"))
    for p in model.parameters():
        p.data.add_(0.01 * torch.randn_like(p))
    path = save_model(model, tmp_path / "model.pt", meta={"note": "test"})
    blob = torch.load(path, weights_only=True)  # plain state dict + config, no DeepSpeed, no pickle of classes
    assert blob["format"] == "rtml-surrogate" and "state_dict" in blob
    again = load_model(tmp_path)
    for (k, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k
    # files written while there were several heads: a Kohn–Sham model loads, a retired head is refused by name
    for head, extra in (("kohn_sham", {}), ("unitary", {"h_scale": 0.1, "extrapolate": True})):
        old = dict(blob, config={**blob["config"], "head": head, **extra})
        torch.save(old, tmp_path / f"{head}.pt")
        if head == "kohn_sham":
            assert load_model(tmp_path / f"{head}.pt").cfg == model.cfg
        else:
            with pytest.raises(ModelFileError, match="unitary.pt: field 'config.head': expected 'kohn_sham'.*retired"):
                load_model(tmp_path / f"{head}.pt")


def test_model_files_from_before_the_decoder_lost_its_dead_sources_load(tmp_path):
    """Before issue 29 the decoder's sources per (L, p) were [4 ρ channels, 4 Δρ channels, atom a, atom b (2·mul),
    geometry, field...], every one but Δρ and the atoms multiplied by zero. A file in that layout loads with the
    live rows in place and the dead ones dropped, whatever they held (a real `corpus` model gave bit-identical
    rollouts before and after, docs/model.md)."""
    from rtml.models.surrogate import Surrogate, preset

    torch.manual_seed(0)
    model = Surrogate(preset("debug"))
    for p in model.parameters():
        p.data.add_(0.01 * torch.randn_like(p))
    dec, sd = model.decoder, dict(model.state_dict())
    n_out, n_delta = dec.n_out, dec.n_delta
    for key, n in dec.n_src.items():
        n_dead_tail = 5  # geometry, field, ... sources after the atoms' rows
        n_old = 4 + n + n_dead_tail
        rows = [None] * 4 + list(range(n)) + [None] * n_dead_tail  # old row -> today's row (None: dead)
        for part in ("weight", "bias"):
            w = sd[f"decoder.static_w.{key}.{part}"].reshape(n, n_out, -1)
            g = sd[f"decoder.gate.{key}.{part}"].reshape(n, -1)
            old_w = torch.stack([w[r] if r is not None else torch.randn_like(w[0]) for r in rows])
            old_g = torch.stack([g[r] if r is not None else torch.randn_like(g[0]) for r in rows])
            sd[f"decoder.static_w.{key}.{part}"] = old_w.reshape(n_old * n_out, *w.shape[2:]).squeeze(-1) \
                if part == "bias" else old_w.reshape(n_old * n_out, -1)
            sd[f"decoder.gate.{key}.{part}"] = old_g.squeeze(-1) if part == "bias" else old_g
    assert n_delta == 4
    blob = torch.load(save_model(model, tmp_path / "model.pt"), weights_only=True)
    torch.save(dict(blob, state_dict=sd), tmp_path / "old.pt")
    again = load_model(tmp_path / "old.pt")
    for k, a in model.state_dict().items():
        assert torch.equal(a, again.state_dict()[k]), k


def test_not_an_rtml_model(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="not an rtml model"):
        load_model(tmp_path / "x.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "y.pt")
    with pytest.raises(ModelFileError, match="format"):
        load_model(tmp_path / "y.pt")
    with pytest.raises(ModelFileError, match="no such model"):
        load_model(tmp_path / "missing.pt")


def test_window_stream_is_deterministic_sharded_and_follows_the_curriculum(small_store):
    from rtml.platform.train.data import WindowStream

    def stream(rank):
        return WindowStream(small_store, "all", (4, 8), 3, 6, rank=rank, world_size=2, seed=5)

    a, b, r1 = stream(0), stream(0), stream(1)
    assert a.plan(7) == b.plan(7)  # resumable: the batch of a step depends only on (seed, step, rank)
    assert a.plan(7) != a.plan(8)
    assert all(s % 2 == 0 for _, s, _ in a.plan(2)) and all(s % 2 == 1 for _, s, _ in r1.plan(2))
    assert {h for _, _, h in a.plan(0)} == {4} and {h for _, _, h in a.plan(3)} == {8}
    assert min(s for _, s, _ in a.plan(2) + r1.plan(2)) >= 2  # the previous frame never precedes the kick
    batch = a.batch(4)
    assert batch.rho.shape[:2] == (6, 10)
    items = list(a.iterate(0, 5, prefetch=2))
    assert [s for s, _, _ in items] == list(range(5))
    assert torch.equal(items[4][1].rho, a.batch(4).rho)


def test_dipole_integrals_reproduce_the_engine_dipole(small_store):
    """The evaluation's dipole operator (recomputed from geometry + basis name) equals the engine's."""
    from rtml.datasets.integrals import dipole_integrals
    from rtml.datasets.observables import dipole_from_density
    from rtml.datasets.store.zarr_store import TrajectoryStore

    store = TrajectoryStore(small_store)
    for tid in store.ids()[:2]:
        traj = store.read(tid)
        r, nuc = dipole_integrals(traj)
        mu = dipole_from_density(traj.density, r, nuc)
        np.testing.assert_allclose(mu, traj.dipole, atol=2e-6)


def test_rollout_evaluation_metrics_and_trivial_baseline(small_store, tmp_path):
    from rtml.datasets.store.zarr_store import TrajectoryStore
    from rtml.models.surrogate import Surrogate, preset
    from rtml.platform.evaluate import RolloutEvalConfig, aggregate, evaluate_trajectory, plot_results

    store = TrajectoryStore(small_store)
    kicked = next(i for i in store.ids() if "kick" in i)
    model = Surrogate(preset("debug", xc_anchor="frozen")).eval()
    res = evaluate_trajectory(model, store.read(kicked), RolloutEvalConfig(max_steps=20), source=kicked)
    assert res["frames"] == 20
    for who in ("model", "frozen_xc", "trivial"):
        assert {"scaled_l2", "dipole_nrmse", "spectrum_nrmse", "spectrum_overlap"} <= set(res[who])
    for who in ("model", "frozen_xc"):
        assert res[who]["steps_to_violation"] == 20 and res[who]["ms_per_step"] > 0  # unitary steps: no violation
    # an untrained Kohn–Sham model is the frozen-xc propagator
    assert abs(res["model"]["dipole_nrmse"] - res["frozen_xc"]["dipole_nrmse"]) < 1e-6
    agg = aggregate([res])
    assert agg["trivial/dipole_nrmse"] > 0.5
    assert [p.name for p in plot_results([res], tmp_path)] == ["dipole.png", "spectrum.png"]


def test_batched_evaluation_equals_one_at_a_time(small_store):
    """Trajectories of different molecules (H2, LiH: padded batch) rolled out together give each one's metrics."""
    from rtml.datasets.store.zarr_store import TrajectoryStore
    from rtml.models.surrogate import Surrogate, preset
    from rtml.platform.evaluate import RolloutEvalConfig, evaluate_trajectories

    store = TrajectoryStore(small_store)
    ids = store.ids()
    items = [(store.read(i), i) for i in [*ids[:2], *ids[-2:]]]  # H2 and LiH
    assert len({t.molecule for t, _ in items}) == 2
    torch.manual_seed(0)
    model = Surrogate(preset("debug", xc_anchor="linear")).eval()
    for p in list(model.decoder.static_w.parameters()) + list(model.coef.parameters()):
        torch.nn.init.normal_(p, std=0.05)  # non-trivial learned terms
    one, together = (evaluate_trajectories(model, items, RolloutEvalConfig(max_steps=16, batch=b)) for b in (1, 4))
    for a, b in zip(one, together):
        assert a["id"] == b["id"]
        for who in ("model", "frozen_xc", "linear_xc", "trivial"):
            for m in ("dipole_nrmse", "scaled_l2"):
                assert a[who][m] == pytest.approx(b[who][m], rel=1e-5, abs=1e-9), (a["id"], who, m)


def test_default_train_config_is_the_debug_recipe():
    assert TrainConfig() == recipes.debug() and TrainConfig().model == preset("debug")


def test_evaluate_command_logs_a_run(small_store, tmp_path):
    from mlflow.tracking import MlflowClient

    from rtml.cli.main import main
    from rtml.models.surrogate import Surrogate, preset

    save_model(Surrogate(preset("debug")), tmp_path / "m" / "model.pt")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["evaluate", small_store, "--model", str(tmp_path / "m"), "--out", str(tmp_path / "ev"),
                 "--max-trajectories", "2", "--max-steps", "10", "--tracking-uri", uri, "--json-path",
                 str(tmp_path / "m.json")]) == 0
    side = json.loads((tmp_path / "m.json").read_text())
    assert set(side) == {"model", "frozen_xc", "linear_xc", "grid_xc", "trivial"}
    assert {"dipole_nrmse", "scaled_l2", "spectrum_overlap", "spectrum_nrmse", "steps_to_violation",
            "ms_per_step"} <= set(side["model"])
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert len(metrics["per_trajectory"]) == 2 and "model/dipole_nrmse" in metrics["rollout"]
    c = MlflowClient(uri)
    (run,) = c.search_runs([c.get_experiment_by_name("rtml-evaluate").experiment_id])
    assert "model/scaled_l2" in run.data.metrics and run.data.tags["rtml.model"] == str(tmp_path / "m")
    assert main(["evaluate", small_store, "--out", str(tmp_path / "bl"), "--json-path",
                 str(tmp_path / "bl.json"), "--max-trajectories", "2", "--max-steps", "10", "--tracking-uri", uri]) == 0
    bl = json.loads((tmp_path / "bl.json").read_text())
    assert set(bl) == {"frozen_xc", "linear_xc", "grid_xc", "trivial"} and "dipole_nrmse" in bl["frozen_xc"]
    assert main(["evaluate", small_store, "--model", str(tmp_path / "nothing.pt"), "--tracking-uri", uri]) == 2
    assert main(["evaluate", str(tmp_path / "missing.zarr"), "--model", str(tmp_path / "m"), "--tracking-uri",
                 uri]) == 2


def test_model_preset_rejects_unknown_fields():
    from rtml.models.surrogate import preset

    with pytest.raises(ValueError, match="unknown field 'xc_ancor'"):
        preset("debug", xc_ancor="linear")


def test_progress_line_from_reported_metrics(capsys):
    from rtml.platform.workers.progress import ProgressCallback

    cb = ProgressCallback("run-a", 100)
    cb.after_report(None, [{"step": 20, "train_loss": 0.5, "val_loss": 0.25, "windows_per_s": 12.0}], None)
    cb._t0 -= 10.0  # 10 s for the next 20 steps: 60 steps left = 30 s
    cb.after_report(None, [{"step": 40, "val_loss": 0.2}], object())
    first, second = capsys.readouterr().out.strip().splitlines()
    assert first.startswith("[run-a] step 20/100") and "loss 0.5" in first and "windows/s 12" in first
    assert "step 40/100" in second and "ETA 0.5 min (checkpoint)" in second
