"""Field tiers, resonant pulses, excited populations, the per-regime summary and model selection by rollouts."""

import numpy as np
import pytest
import torch

from rtml.datasets.errors import DataError
from rtml.datasets.fields import TIERS, FieldSpec, field_tier, kick, sample_field
from rtml.datasets.molecules import CATALOG
from rtml.datasets.observables import excited_population


@pytest.mark.parametrize("family, lo, hi, tier", [("weak", 1e-3, 5e-3, "weak"), ("moderate", 0.01, 0.03, "moderate"),
                                                   ("resonant", 0.04, 0.1, "strong")])
def test_tier_families_sample_inside_their_tier(family, lo, hi, tier):
    rng = np.random.default_rng(0)
    specs = [sample_field(family, rng, resonance=(0.3, (0.0, 0.0, 1.0))) for _ in range(200)]
    amps = np.array([s.amplitude for s in specs])
    assert amps.min() >= lo and amps.max() <= hi and {field_tier(s) for s in specs} == {tier}
    # log-uniform: the median is the geometric mean of the bounds
    assert abs(np.log(np.median(amps)) - 0.5 * np.log(lo * hi)) < 0.25
    if family == "resonant":
        assert {s.omega for s in specs} == {0.3} and {s.polarization for s in specs} == {(0.0, 0.0, 1.0)}


def test_mixed_family_spans_every_tier_and_is_partly_resonant():
    rng = np.random.default_rng(1)
    specs = [sample_field("mixed", rng, resonance=(0.3, (1.0, 0.0, 0.0))) for _ in range(600)]
    tiers = [field_tier(s) for s in specs]
    assert all(tiers.count(t) > 60 for t in TIERS)
    resonant = np.mean([0.285 <= s.omega <= 0.315 and s.polarization == (1.0, 0.0, 0.0) for s in specs])
    assert 0.25 < resonant < 0.42  # 1/3 resonant (plus a few random frequencies that land there)


def test_resonant_families_need_the_excitation():
    with pytest.raises(DataError, match="resonance"):
        sample_field("resonant", np.random.default_rng(0))


def test_tiers_of_kicks_and_pulses():
    assert field_tier(kick(1e-2)) == "weak"
    pulse = {"kind": "gaussian", "omega": 0.3, "sigma": 5.0, "t0": 15.0}
    assert [field_tier(FieldSpec(amplitude=a, **pulse)) for a in (0.005, 0.02, 0.05, 0.1)] == \
        ["weak", "moderate", "strong", "strong"]


def test_first_bright_excitation_of_h2_is_along_the_bond():
    """H2's lowest bright state (Σu+) is polarised along the bond (z in the catalog) and its energy is the
    linear-response one."""
    from rtml.datasets.observables import HARTREE_EV
    from rtml.datasets.resonance import first_bright
    from rtml.datasets.validation import linear_response

    omega, pol = first_bright(CATALOG["h2"], "6-31g", "LDA,VWN")
    assert abs(abs(pol[2]) - 1.0) < 1e-8
    e, f = linear_response(CATALOG["h2"], "6-31g", "LDA,VWN", nstates=12)
    assert np.isclose(omega * HARTREE_EV, e[np.flatnonzero(f.sum(-1) >= 0.02)[0]])


def test_excited_population_counts_electrons_moved_out_of_the_ground_state():
    """Rotating the HOMO into the LUMO by θ in both spins moves 2 sin²θ electrons (closed shell, total density)."""
    rng = np.random.default_rng(0)
    n = 5
    a = rng.normal(size=(n, n))
    s = a @ a.T / n + np.eye(n)  # an overlap matrix
    w, v = np.linalg.eigh(s)
    c = v @ np.diag(w ** -0.5) @ v.T  # S-orthonormal orbitals (columns)
    occ = c[:, :2]
    p0 = 2 * occ @ occ.T
    frames = []
    for th in (0.0, 0.3, 0.7, np.pi / 2):
        rot = c[:, :3].copy()
        rot[:, 1], rot[:, 2] = np.cos(th) * c[:, 1] + np.sin(th) * c[:, 2], -np.sin(th) * c[:, 1] + np.cos(th) * c[:, 2]
        frames.append(2 * rot[:, :2] @ rot[:, :2].T)
    pop = excited_population(np.array(frames)[:, None], s, p0[None])
    assert np.allclose(pop, [2 * np.sin(t) ** 2 for t in (0.0, 0.3, 0.7, np.pi / 2)], atol=1e-12)
    spin = np.array(frames)[:, None].repeat(2, 1) / 2  # the same as two spin densities
    assert np.allclose(excited_population(spin, s, np.stack([p0, p0]) / 2), pop, atol=1e-12)


def test_regime_summary_groups_and_ratios():
    from rtml.platform.regimes import format_compare, format_regimes, summarize_regimes

    def res(mol, tier, model, lin):
        return {"id": f"{mol}-{tier}", "molecule": mol, "functional": "LDA,VWN", "tier": tier,
                "model": {"dipole_nrmse": model}, "linear_xc": {"dipole_nrmse": lin}, "trivial": {"dipole_nrmse": 1.0}}

    s = summarize_regimes([res("h2", "strong", 0.1, 0.4), res("h2", "strong", 0.3, 0.4), res("lih", "strong", 0.2, 0.1),
                           res("h2", "weak", 0.01, 0.01)])
    rows = {(r["group"], r["tier"]): r for r in s["rows"]}
    assert rows[("h2 (LDA,VWN)", "strong")]["model/dipole_nrmse"] == pytest.approx(0.2)
    assert rows[("h2 (LDA,VWN)", "strong")]["ratio"] == pytest.approx(0.5)
    assert rows[("all", "strong")]["model/dipole_nrmse"] == pytest.approx(0.2)  # mean of the molecules' means
    assert rows[("all", "strong")]["worst_ratio"] == pytest.approx(2.0)
    assert ("all", "moderate") not in rows
    table = format_regimes(s)
    assert "| lih (LDA,VWN) | strong | 1 | 0.2 | 0.1 | 1 | 2 |" in table
    assert "0.2 (0.50×)" in format_compare({"a": s, "b": s})


def test_selector_keeps_the_best_state(heldout_store):
    """The untrained model (linear anchor) *is* the linear-xc propagator: its score is 1; a worse state is
    not selected and the best weights are kept."""
    from rtml.platform.train.config import SelectionConfig, TrainConfig
    from rtml.platform.train.selection import RolloutSelector, selection_items

    cfg = TrainConfig(select=SelectionConfig(max_steps=16))
    items = selection_items(heldout_store, None, 3)
    assert len(items) == 3 and {t.molecule for t, _ in items} == {"h2", "lih"}  # round-robin over molecules
    from rtml.models.surrogate import Surrogate

    torch.manual_seed(0)
    model = Surrogate(cfg.model)
    sel = RolloutSelector(cfg, items)
    first = sel.score(model, 10)
    assert first["select/score"] == pytest.approx(1.0, abs=1e-6)
    good = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.coef.bias.fill_(50.0)  # c_θ = 1 + 100 s: a much stronger xc response than the exact kernel
    second = sel.score(model, 20)
    assert second["select/score"] > 1.0 and sel.best["step"] == 10 and second["select/best_step"] == 10
    assert all(torch.equal(sel.best["state"][k], good[k]) for k in good)
    restored = RolloutSelector(cfg, items)
    restored.load(sel.state())
    assert restored.best["step"] == 10 and restored.linear == sel.linear
