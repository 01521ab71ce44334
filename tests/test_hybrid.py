"""Hybrid propagation (rtml.platform.hybrid): anchoring that is exact, triggers that fire, valid hand-backs."""

import numpy as np
import pytest
import torch

from rtml.datasets.engine.run import EngineConfig, propagate
from rtml.datasets.fields import kick
from rtml.datasets.molecules import CATALOG
from rtml.models.surrogate import Surrogate, preset
from rtml.platform.hybrid.config import HybridConfig
from rtml.platform.hybrid.propagator import propagate_hybrid

N = 30


@pytest.fixture(scope="module")
def h2_ref():
    return propagate(CATALOG["h2"], kick(1e-2, (0, 0, 1)), EngineConfig(n_steps=N))


def _run(models, cfg):
    return propagate_hybrid(models, CATALOG["h2"], kick(1e-2, (0, 0, 1)), EngineConfig(n_steps=N), cfg)


def test_anchoring_every_step_is_the_reference_engine(h2_ref):
    res = _run([Surrogate(preset("debug"))], HybridConfig(max_model_steps=0))
    assert res.reference_fraction == 1.0
    assert np.abs(res.trajectory.density - h2_ref.density).max() < 1e-12
    assert np.abs(res.trajectory.energy - h2_ref.energy).max() < 1e-10


def test_forced_anchoring_hands_back_valid_states(h2_ref):
    res = _run([Surrogate(preset("debug", xc_anchor="linear"))], HybridConfig(reference_every=5, anchor_steps=3))
    assert [t["reason"] for t in res.triggers] == ["reference_every"] * 3
    assert 0.3 < res.reference_fraction < 0.45
    traj = res.trajectory.validate()
    p, s = traj.density, traj.overlap
    assert np.abs(p @ s @ p - 2 * p).max() < 1e-8  # idempotent (closed shell, occupation 2)
    assert np.isnan(traj.energy[~res.by_reference]).all() and np.isfinite(traj.energy[res.by_reference]).all()
    # untrained linear-xc model on a 1e-2 kick: close to the engine
    assert np.abs(traj.density - h2_ref.density).max() < 1e-5


class _Broken(torch.nn.Module):
    """A model wrapper that corrupts the state it predicts (constructed case for the validity triggers)."""

    def __init__(self, model, what):
        super().__init__()
        self.m, self.what, self.cfg = model, what, model.cfg

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.m, name)

    def step(self, st, state, rho_o, drho_o, e_sub, dt):
        nxt, state = self.m.step(st, state, rho_o, drho_o, e_sub, dt)
        bad = torch.zeros_like(nxt)
        if self.what == "trace":
            bad[..., 0, 0, 0] = 1e-3
        elif self.what == "hermiticity":
            bad[..., 0, 0, 1] = 1e-6
        elif self.what == "idempotency":
            bad[..., 0, 0, 0], bad[..., 0, 1, 1] = 1e-4, -1e-4
        return nxt + bad, state


@pytest.mark.parametrize("what", ["trace", "hermiticity", "idempotency"])
def test_validity_triggers_fire_and_the_reference_takes_over(what):
    res = _run([_Broken(Surrogate(preset("debug")), what)], HybridConfig(anchor_steps=4))
    assert res.triggers and {t["reason"] for t in res.triggers} == {what}
    assert res.reference_fraction == 1.0  # every surrogate frame was discarded
    res.trajectory.validate()


def test_spread_trigger_fires_for_a_disagreeing_ensemble():
    a = Surrogate(preset("debug", xc_anchor="frozen"))  # frozen xc
    b = Surrogate(preset("debug", xc_anchor="linear"))  # linear xc: a different prediction
    res = _run([a, b], HybridConfig(max_spread=1e-4, anchor_steps=4))
    assert "spread" in {t["reason"] for t in res.triggers}
    calm = _run([a, a], HybridConfig(max_spread=1e-4, anchor_steps=4))  # identical members: no spread
    assert not calm.triggers and np.nanmax(calm.dipole_spread) == 0.0


def test_bad_inputs():
    m = Surrogate(preset("debug"))
    m.rtml_meta = {"data": {"functionals": ["B3LYP"], "bases": ["6-31g"], "dt": [0.2]}}
    with pytest.raises(ValueError, match="functional"):
        _run([m], HybridConfig())
    with pytest.raises(ValueError, match="bundle"):
        _run([Surrogate(preset("debug", bundle=2))], HybridConfig())
    with pytest.raises(ValueError, match="anchor_steps"):
        HybridConfig(anchor_steps=0)


@pytest.mark.integration  # the whole command: SCF, ensemble rollout, store, plots, an MLflow run
def test_cli_propagate_writes_a_store_entry(tmp_path, capsys):
    from rtml.cli.main import main
    from rtml.datasets.store.zarr_store import TrajectoryStore
    from rtml.platform import tracking
    from rtml.platform.modelio import save_model

    path = save_model(Surrogate(preset("debug", xc_anchor="linear")), tmp_path / "m.pt")
    out, uri = tmp_path / "h.zarr", f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["propagate", "--model", str(path), "--molecule", "h2", "--field", "kick:1e-2:z", "--steps", "60",
                 "--out", str(out), "--reference-every", "6", "--anchor-steps", "2", "--tracking-uri", uri,
                 "--max-model-steps", "None"]) == 0
    traj = TrajectoryStore(str(out)).read("h2-hybrid")
    assert traj.n_steps == 60 and "reference_every" in capsys.readouterr().out
    assert (tmp_path / "h.zarr.plots" / "h2-hybrid" / "dipole.png").stat().st_size > 1000
    assert (tmp_path / "h.zarr.plots" / "h2-hybrid" / "spectrum.png").is_file()
    c = tracking.client(uri)
    run = c.search_runs([c.get_experiment_by_name("rtml-propagate").experiment_id])[0]
    assert run.data.metrics["anchors"] == len(traj.meta["triggers"]) > 0
    assert 0 < run.data.metrics["reference_fraction"] < 1 and run.data.params["hybrid.max_model_steps"] == "None"
    arts = {a.path for a in c.list_artifacts(run.info.run_id)} | {a.path for a in c.list_artifacts(run.info.run_id, "plots")}
    assert {"triggers.json", "plots/dipole.png", "plots/spectrum.png"} <= arts
    # geometry, field and settings from a stored trajectory (here the entry just written), flags override
    assert main(["propagate", "--model", str(path), "--from", f"{out}:h2-hybrid", "--steps", "12", "--id", "again",
                 "--out", str(out), "--no-tracking", "--reference-every", "5"]) == 0
    again = TrajectoryStore(str(out)).read("again")
    assert again.n_steps == 12 and again.meta["field_spec"] == traj.meta["field_spec"]
    assert np.abs(again.density[:3] - traj.density[:3]).max() < 1e-12  # the same reference warm-up frames
    assert main(["propagate", "--model", str(path), "--from", str(out), "--out", str(out)]) != 0
    assert "STORE:ID" in capsys.readouterr().err
    assert main(["propagate", "--model", str(path), "--molecule", "h2", "--field", "kick:abc", "--steps", "5",
                 "--out", str(out)]) != 0
    assert "kick amplitude" in capsys.readouterr().err
    # a model trained in another basis: one line naming the bases, no traceback
    other = save_model(Surrogate(preset("debug")), tmp_path / "b.pt",
                       meta={"data": {"functionals": ["LDA,VWN"], "bases": ["sto-3g"], "dt": [0.2]}})
    assert main(["propagate", "--model", str(other), "--molecule", "h2", "--field", "kick:1e-2:z", "--steps", "5",
                 "--out", str(out), "--no-tracking"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "trained in basis set(s) ['sto-3g']" in err and "--basis" in err


def test_python_entry_point_takes_pyscf_and_ase_molecules(h2_ref):
    """A PySCF Mole / converged mean-field object or an ASE Atoms runs like the catalog molecule; a converged
    mean-field object's density starts the SCF (fewer iterations, same ground state)."""
    from ase import Atoms
    from pyscf import dft, gto

    from rtml.platform.hybrid.api import propagate as hybrid
    from rtml.platform.hybrid.inputs import molecule_from

    ref_only = HybridConfig(max_model_steps=0)
    field = kick(1e-2, (0, 0, 1))
    m = Surrogate(preset("debug"))
    mol = gto.M(atom="H 0 0 1.0; H 0 0 1.74", basis="6-31g", verbose=0)  # shifted: centring removes it
    assert np.allclose(molecule_from(mol).positions, CATALOG["h2"].positions, atol=1e-12)
    res = hybrid([m], mol, field, N, hybrid=ref_only)
    assert np.abs(res.trajectory.density - h2_ref.density).max() < 1e-12
    cold = res.trajectory.meta["scf_cycles"]
    mf = dft.RKS(mol, xc="LDA,VWN").run(conv_tol=1e-11)
    warm = hybrid([m], mf, field, N, hybrid=ref_only)
    assert warm.trajectory.meta["scf_cycles"] < cold
    assert np.abs(warm.trajectory.density - h2_ref.density).max() < 1e-8
    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    assert np.abs(hybrid([m], atoms, "kick:1e-2:z", N, hybrid=ref_only).trajectory.density
                  - h2_ref.density).max() < 1e-12
    with pytest.raises(ValueError, match="functional"):  # the mean-field object's functional is used
        m.rtml_meta = {"data": {"functionals": ["LDA,VWN"], "bases": ["6-31g"], "dt": [0.2]}}
        hybrid([m], dft.RKS(mol, xc="PBE"), field, N)
    with pytest.raises(ValueError, match="basis"):
        hybrid([m], gto.M(atom="H 0 0 0; H 0 0 0.74", basis="sto-3g", verbose=0), field, N)
    with pytest.raises(Exception, match="multiplicity"):
        molecule_from(Atoms("H", positions=[[0, 0, 0]], info={"multiplicity": 1}))
    with pytest.raises(Exception, match="PySCF Mole"):
        molecule_from(42)
