"""Overfit sanity: the debug model fits one short reference trajectory (data engine, H2/6-31G, Gaussian pulse).

The model starts as linear extrapolation of the last step (decoder output zero); learning must cut the error well
below that and far below the trivial baseline ρ(t+Δt) = ρ(t). Fails if gradients or the optimiser are broken."""

import pytest
import torch

from rtml.models.inputs import MoleculeBatch, spin_resolved
from rtml.models.losses import reconstruction_loss
from rtml.models.surrogate import Surrogate, preset


@pytest.mark.parametrize("head", ["unitary", "density"])
def test_debug_model_overfits_one_trajectory(h2_traj, head):
    torch.manual_seed(0)
    model = Surrogate(preset("debug", head=head), dtype=torch.float64)
    mol = MoleculeBatch.from_trajectories([h2_traj])
    rho = spin_resolved(torch.from_numpy(h2_traj.density))[None]
    field = torch.from_numpy(h2_traj.field)[None]
    trivial = (rho[:, 1:] - rho[:, :-1]).abs().square().mean()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(250):
        loss = reconstruction_loss(model(mol, rho, field, h2_traj.dt), rho[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach() / trivial))
    assert all(map(torch.isfinite, map(torch.tensor, history)))
    assert history[-1] < 0.3 * history[0], history[::25]
    assert history[-1] < 0.01, history[::25]
