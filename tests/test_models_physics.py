"""Variable basis sets in one batch and forward == step-by-step (the 10,000-step conservation check of the
Kohn–Sham head is in tests/test_kohn_sham.py)."""

import pytest
import torch
from model_inputs import guess_inputs, with_kohn_sham

from rtml.models.inputs import MoleculeBatch, spin_resolved
from rtml.models.surrogate import Surrogate, preset


def _nontrivial(model, std=0.05):
    torch.manual_seed(1)
    for p in list(model.decoder.static_w.parameters()) + list(model.coef.parameters()):
        torch.nn.init.normal_(p, std=std)
    return model


def _inputs(trajs):
    mol = MoleculeBatch.from_trajectories(trajs, kohn_sham=True)
    rho = torch.stack([spin_resolved(torch.from_numpy(t.density[0]), mol.nbf) for t in trajs])
    return mol, rho


def test_variable_basis_one_batch_fixed_parameter_count():
    """H2+ (STO-3G, open shell), H2O (6-31G) and C6H6 (6-31G, 66 functions) in one batch, exact Kohn–Sham terms of
    each (without the xc-kernel source: C6H6's dense kernel alone is 600 MB)."""
    cfg = preset("debug", xc_anchor="frozen", linear_xc_source=False)
    model = Surrogate(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    names = [("h2p", "sto-3g"), ("h2o", "6-31g"), ("c6h6", "6-31g")]
    mol, rho0 = guess_inputs(names)
    mol = with_kohn_sham(mol, rho0, names, kernel=False)
    assert mol.nbf == 66
    T = 2
    rho = torch.stack([rho0] * (T + 1), dim=1).to(torch.complex64)
    field = torch.zeros(3, T + 1, 3)
    field[:, 0, 2] = 1e-2
    pred = model(mol, rho, field, 0.2)
    assert pred.shape == (3, T, 2, 66, 66) and torch.isfinite(pred).all()
    assert pred[0, :, :, 2:].abs().max() == 0 and pred[1, :, :, 13:].abs().max() == 0  # padding stays zero
    assert (pred[2] - rho[2, 1:]).abs().max() > 1e-6  # C6H6 really propagated
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert sum(p.numel() for p in Surrogate(cfg).parameters()) == n_params


@pytest.mark.parametrize("bundle", [1, 2])
def test_forward_equals_recurrent_steps(h2o_traj, bundle):
    """Teacher-forced sequence forward (parallel scan) == the recurrent step fed the same reference frames."""
    model = _nontrivial(Surrogate(preset("debug", bundle=bundle), dtype=torch.float64))
    mol, _ = _inputs([h2o_traj])
    rho = spin_resolved(torch.from_numpy(h2o_traj.density[:9]))[None]
    field = torch.from_numpy(h2o_traj.field[:9])[None]
    pred = model(mol, rho, field, h2o_traj.dt)
    st = model.prepare(mol, rho[:, 0])
    state, prev, outs = model.init_state(st), None, []
    e_mid = 0.5 * (field[:, 1:] + field[:, :-1]).transpose(0, 1)
    for t in range(0, 8, bundle):
        cur = model.to_orth(st, rho[:, t])
        drho = torch.zeros_like(cur) if prev is None else cur - prev
        nxt, state = model.step(st, state, cur, drho, e_mid[t:t + bundle], h2o_traj.dt)
        outs += [model.from_orth(st, x) for x in nxt]
        prev = cur
    assert (torch.stack(outs, 1) - pred).abs().max() < 1e-12
