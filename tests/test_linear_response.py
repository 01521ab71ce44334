"""The exact-linear-response correction of the Magnus step (issue 26): its linearisation is the exact propagator
e^{hL} at any step (checked against a dense matrix exponential and the equation of motion itself), weak kicks have
no time-step error at Δt = 1.6 a.u., and the untrained surrogate with it is the corrected linear-xc baseline."""

import numpy as np
import pytest
import torch

from rtml.datasets.sized_cache import SizedLRU
from rtml.models import linear_response as lr_mod
from rtml.models.baselines import FrozenXC, FrozenXCConfig, LinearXC
from rtml.models.inputs import MoleculeBatch, spin_resolved
from rtml.models.kohn_sham import KohnShamOperators
from rtml.models.linear_response import (
    HermitianCoords,
    LinearResponse,
    commutator,
    grid_kernel_step,
    grid_kernel_tag,
    linear_part,
    linear_xc_step,
    linear_xc_tag,
)
from rtml.models.rollout import rollout


@pytest.fixture(scope="module")
def h2o(h2o_traj):
    mol = MoleculeBatch.from_trajectories([h2o_traj], dtype=torch.float32, kohn_sham=True)
    ops = KohnShamOperators.from_batch(mol.ks)
    f0 = ops.h_o.unsqueeze(-3) + ops.coulomb(ops.rho_gs_o) + ops.vxc0_o
    return mol, ops, f0


def _hermitian(n, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(2, n, n, generator=g, dtype=torch.float64) + 1j * torch.randn(2, n, n, generator=g,
                                                                                  dtype=torch.float64)
    return (0.5 * (a + a.mH))[None]  # [1, 2, N, N]


def _tangent(x, rho0):
    """The occupied–virtual part of x: the first-order change of a pure state (what McWeeny keeps)."""
    q = torch.eye(rho0.shape[-1], dtype=rho0.dtype) - rho0
    return rho0 @ x @ q + q @ x @ rho0


def _liouvillian(ops, f0):
    c = HermitianCoords(ops.h_o.shape[-1])
    basis = c.to_mat(torch.eye(c.size, dtype=torch.float64))[:, None]
    return c, c.to_vec(linear_part(ops, f0, basis))[:, 0].T  # [n, n]


def test_liouvillian_is_the_linearised_equation_of_motion(h2o):
    """L δ against central differences of -i[F(ρ₀ + εδ), ρ₀ + εδ], F = h + J + V_xc[ρ₀] + K[ρ − ρ₀]."""
    _, ops, f0 = h2o
    x, eps = _hermitian(ops.h_o.shape[-1], 0), 1e-6

    def rhs(r):
        return commutator(ops.h_o.unsqueeze(-3) + ops.coulomb(r) + ops.vxc0_o + ops.linear_xc(r), r)

    fd = (rhs(ops.rho_gs_o + eps * x) - rhs(ops.rho_gs_o - eps * x)) / (2 * eps)
    got = linear_part(ops, f0, x)
    assert float((got - fd).abs().max()) < 1e-6 * float(fd.abs().max())


STEPS = {"linear_xc": (linear_xc_step, linear_xc_tag), "grid_kernel": (grid_kernel_step, grid_kernel_tag)}


@pytest.mark.parametrize("kind", ["linear_xc", "grid_kernel"])
@pytest.mark.parametrize("h", [0.2, 1.6])
def test_corrected_step_linearises_to_the_exact_propagator(h2o, h, kind):
    """cur = ρ₀ + εX, prev = ρ₀ + εY (X, Y first-order changes of a pure state), no field: next − ρ₀ = e^{hL} εX
    to first order (dense matrix_exp); the previous state drops out (the Magnus extrapolation's dependence on it is
    removed). For the linear-xc step and for the grid-kernel step (what the grid LDA and the learned local term
    linearise to: their kernel is on another grid than L's, and the correction removes that difference too)."""
    _, ops, f0 = h2o
    c, lmat = _liouvillian(ops, f0)
    n, eps = ops.h_o.shape[-1], 1e-7
    x, y = _tangent(_hermitian(n, 1), ops.rho_gs_o), _tangent(_hermitian(n, 2), ops.rho_gs_o)
    make, tag = STEPS[kind]
    lr = LinearResponse(ops, make(1), tag(1))
    step = make(1)
    cur, prev, r = ops.rho_gs_o + eps * x, ops.rho_gs_o + eps * y, ops.rho_gs_o
    nodes = torch.zeros(1, 3, 3, dtype=torch.float64)
    # minus the step from the ground state itself (the SCF's residual [F₀, ρ₀] ~ 1e-7 moves it a little)
    base = lr.correct(step(ops, r, r, nodes[:, 1], h), r, r, nodes, h)
    got = lr.correct(step(ops, cur, prev, nodes[:, 1], h), cur, prev, nodes, h) - base
    want = c.to_mat(torch.linalg.matrix_exp(h * lmat) @ c.to_vec(eps * x)[0])[None]
    assert float((got - want).abs().max()) < 1e-5 * float(want.abs().max())
    # the plain Magnus step is not this at h = 1.6 (what the correction is for)
    plain = step(ops, cur, prev, nodes[:, 1], h) - step(ops, r, r, nodes[:, 1], h)
    if h > 1:
        assert float((plain - want).abs().max()) > 0.05 * float(want.abs().max())


def test_corrected_step_integrates_the_field_drive_exactly(h2o):
    """From the ground state under a field linear in time over the step, next − ρ₀ = ∫ e^{(h−s)L} E(s) ds·b to
    first order: the reference from one augmented matrix exponential."""
    _, ops, f0 = h2o
    c, lmat = _liouvillian(ops, f0)
    h, e0, e1 = 1.6, torch.tensor([1e-7, -2e-7, 0.5e-7], dtype=torch.float64), torch.tensor(
        [3e-7, 1e-7, -1e-7], dtype=torch.float64)
    b = c.to_vec(commutator(ops.r_o.unsqueeze(-3), ops.rho_gs_o.unsqueeze(-4)))[0].T  # [n, 3]
    # E(s) = e0 + (e1 − e0) s/h: augmented [[hL, h b e0, h b (e1−e0)], [0, 0, 1], [0, 0, 0]]
    m = c.size
    aug = torch.zeros(m + 2, m + 2, dtype=torch.float64)
    aug[:m, :m], aug[:m, m], aug[:m, m + 1] = h * lmat, h * (b @ e0), h * (b @ (e1 - e0))
    aug[m + 1, m] = 1.0  # d(s/h)/d(s/h) = 1: the ramp grows from the constant
    want = c.to_mat(torch.linalg.matrix_exp(aug)[:m, m])[None]
    lr = LinearResponse(ops, linear_xc_step(1), linear_xc_tag(1))
    mean = 0.5 * (e0 + e1)
    nodes = torch.stack([e0, mean, e1])[None]  # [1, 3, 3]: start, t+h/2, end
    r = ops.rho_gs_o
    zero = torch.zeros_like(nodes)
    got = (lr.correct(linear_xc_step(1)(ops, r, r, mean[None], h), r, r, nodes, h)
           - lr.correct(linear_xc_step(1)(ops, r, r, zero[:, 1], h), r, r, zero, h))
    assert float((got - want).abs().max()) < 1e-5 * float(want.abs().max())


def test_weak_kick_at_a_large_step_has_no_time_step_error(h2o_traj):
    """H2O kicked (1e-2): 10 steps of 1.6 a.u. with the corrected step against linear xc at dt/4 = 0.05 a.u.; the
    plain Magnus step at 1.6 a.u. is far off (issue 26: 0.6 dipole nRMSE over 400 a.u.)."""
    mol = MoleculeBatch.from_trajectories([h2o_traj], dtype=torch.float32, kohn_sham=True)
    rho = spin_resolved(torch.from_numpy(h2o_traj.density[1:2]), mol.nbf)[None, 0]  # [1, 2, N, N] just kicked
    r = mol.ks.r_ints[0]

    def dip(model, n, dt, every):
        res = rollout(model, mol, rho, torch.zeros(1, n + 1, 3, dtype=torch.float64), n, dt, store_every=every)
        return -torch.einsum("nsij,xji->nx", res.states[0].real, r)

    fine = dip(LinearXC(), 320, 0.05, 32)
    exact = dip(LinearXC(FrozenXCConfig(linear_response="exact")), 10, 1.6, 1)
    plain = dip(LinearXC(), 10, 1.6, 1)
    scale = float((fine - fine.mean(0)).square().mean().sqrt())
    err_exact = float((exact - fine).square().mean().sqrt()) / scale
    err_plain = float((plain - fine).square().mean().sqrt()) / scale
    assert err_exact < 0.02 and err_plain > 5 * err_exact, (err_exact, err_plain)


def test_untrained_surrogate_with_the_exact_linear_response_is_the_corrected_baseline(h2o_traj):
    from rtml.models.surrogate import Surrogate, preset

    tr = h2o_traj.strided(2)
    mol = MoleculeBatch.from_trajectories([tr], dtype=torch.float32, kohn_sham=True)
    rho = spin_resolved(torch.from_numpy(tr.density[:3]), mol.nbf)[None]
    n = 6
    field = torch.from_numpy(tr.field[2:2 + n + 1]).double()[None]
    mid = torch.from_numpy(tr.step_field()[2:2 + n]).double()[None]
    torch.manual_seed(0)
    model = Surrogate(preset("debug", stride=2, linear_response="exact")).eval()
    with torch.no_grad():
        a = rollout(model, mol, rho[:, -1], field, n, tr.dt, context=rho[:, :-1], field_mid=mid).states
        b = rollout(LinearXC(FrozenXCConfig(linear_response="exact")), mol, rho[:, -1], field, n, tr.dt,
                    context=rho[:, :-1], field_mid=mid).states
        # teacher-forced forward (training) takes the same corrected steps
        win = spin_resolved(torch.from_numpy(tr.density[2:2 + n + 1]), mol.nbf)[None]
        pred = model(mol, win, field, tr.dt, rho_prev=rho[:, 1], field_mid=mid)
    assert float((a - b).abs().max()) < 1e-12
    assert float((pred[:, 0] - a[:, 0]).abs().max()) < 1e-6


def test_refusals_and_the_bounded_cache(h2o, monkeypatch):
    from rtml.models.surrogate import SurrogateConfig

    mol, ops, _ = h2o
    with pytest.raises(ValueError, match="xc_anchor='linear'"):
        SurrogateConfig(linear_response="exact", xc_anchor="frozen", linear_xc_source=True)
    with pytest.raises(ValueError, match="use LinearXC or GridXC"):
        FrozenXC(FrozenXCConfig(linear_response="exact")).prepare(mol, None)
    monkeypatch.setattr(lr_mod, "MAX_COORDS", 100)
    lr_mod._cache.items.clear()
    with pytest.raises(ValueError, match="13 basis functions give a 338-dimensional"):
        LinearResponse(ops, linear_xc_step(1), "x").matrices(1.0)
    monkeypatch.setattr(lr_mod, "MAX_COORDS", 4096)
    small = SizedLRU(3.0, lr_mod._cache.size)  # one H2O/6-31G entry is ~1.9 MB: a second one evicts the first
    monkeypatch.setattr(lr_mod, "_cache", small)
    lr = LinearResponse(ops, linear_xc_step(1), "x")
    lr.matrices(0.4)
    lr.matrices(0.8)
    assert len(small.items) == 1 and small.bytes <= small.max_bytes
    assert np.isclose(small.bytes, sum(m.nbytes for m in lr.matrices(0.8).values()))
