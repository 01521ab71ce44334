"""Overfit sanity: the debug model fits one short reference trajectory (data engine, H2/6-31G, Gaussian pulse).

The model starts as the frozen-xc propagator (learned terms zero); Fock supervision on the recorded V_xc(t) must cut
the xc-potential error far below frozen xc's (relative loss 1 at the start), and the one-step densities must follow.
Fails if gradients or the optimiser are broken."""

import torch

from rtml.datasets.kohn_sham import potential_spin_resolved
from rtml.models.inputs import MoleculeBatch, spin_resolved
from rtml.models.losses import LossConfig, reconstruction_loss
from rtml.models.surrogate import Surrogate, preset
from rtml.platform.train.objective import kohn_sham_terms


def test_debug_model_overfits_one_trajectory(h2_traj):
    torch.manual_seed(0)
    model = Surrogate(preset("debug", xc_anchor="frozen"), dtype=torch.float64)
    mol = MoleculeBatch.from_trajectories([h2_traj], kohn_sham=True)
    rho = spin_resolved(torch.from_numpy(h2_traj.density))[None]  # [1, T+1, 2, N, N]
    field = torch.from_numpy(h2_traj.field)[None]
    vxc = potential_spin_resolved(h2_traj.xc_potential)[None]  # [1, T+1, 2, N, N], the same for both spins
    loss_cfg = LossConfig(xc_potential=1.0, hamiltonian_alignment=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    history, density = [], []
    for _ in range(150):
        pred, v_theta = model(mol, rho, field, h2_traj.dt, return_potential=True)
        loss = kohn_sham_terms(mol, rho, field, vxc, v_theta, loss_cfg)["xc_potential"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
        density.append(float(reconstruction_loss(pred.detach(), rho[:, 1:])))
    assert all(map(torch.isfinite, map(torch.tensor, history)))
    assert abs(history[0] - 1.0 / 1.001) < 1e-9  # the untrained model is frozen xc (loss 1, regularised 1e-3)
    assert history[-1] < 0.05, history[::15]
    assert density[-1] < 0.5 * density[0], density[::15]
