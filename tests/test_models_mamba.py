"""Mamba: parallel scan = naive recurrence, recurrent step = full sequence, mamba_ssm parameter layout, CUDA backend."""

import pytest
import torch

from rtml.models.dynamics import DYNAMICS_PRESETS, Dynamics
from rtml.models.mamba import (
    Mamba,
    cuda_backend_available,
    resolve_backend,
    selective_scan,
    selective_scan_reference,
)


def _scan_inputs(b=3, T=37, d=8, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    return (r(b, T, d), torch.nn.functional.softplus(r(b, T, d)), -torch.rand(d, n, generator=g, dtype=torch.float64)
            * 3, r(b, T, n), r(b, T, n), r(d), r(b, T, d), r(b, d, n))


@pytest.mark.parametrize("chunk", [1, 5, 16, 64])
def test_parallel_scan_equals_recurrence(chunk):
    x, delta, A, B, C, D, z, h0 = _scan_inputs()
    y, h = selective_scan(x, delta, A, B, C, D, z, h0, chunk=chunk)
    y_ref, h_ref = selective_scan_reference(x, delta, A, B, C, D, z, h0)
    assert (y - y_ref).abs().max() < 1e-12 and (h - h_ref).abs().max() < 1e-12


def test_step_equals_full_sequence_and_continuation():
    torch.manual_seed(0)
    m = Mamba(16, d_state=4, backend="torch", chunk=7).double()
    u = torch.randn(2, 29, 16, dtype=torch.float64)
    y, (conv, ssm) = m(u)
    state, ys = m.init_state(2), []
    for t in range(u.shape[1]):
        o, state = m.step(u[:, t], state)
        ys.append(o)
    assert (torch.stack(ys, 1) - y).abs().max() < 1e-12
    assert (state[0] - conv).abs().max() < 1e-12 and (state[1] - ssm).abs().max() < 1e-12
    y1, s1 = m(u[:, :11])
    y2, _ = m(u[:, 11:], s1)
    assert (torch.cat([y1, y2], 1) - y).abs().max() < 1e-12


def test_dynamics_step_equals_sequence():
    torch.manual_seed(0)
    dyn = Dynamics(DYNAMICS_PRESETS["debug"], d_cond=6).double()
    z = torch.randn(5, 13, 16, dtype=torch.float64)
    cond, phi = torch.randn(5, 6, dtype=torch.float64), torch.randn(5, 13, 2, dtype=torch.float64)
    out, _ = dyn(z, cond, phi)
    state, outs = dyn.init_state(5, torch.float64), []
    for t in range(13):
        o, state = dyn.step(z[:, t], cond, phi[:, t], state)
        outs.append(o)
    assert (torch.stack(outs, 1) - out).abs().max() < 1e-12


def test_parameters_have_mamba_ssm_layout():
    """Same keys and shapes as mamba_ssm.Mamba(d_model=32, d_state=16, d_conv=4, expand=2) (mamba_simple.py)."""
    m = Mamba(32, d_state=16, d_conv=4, expand=2, backend="torch")
    expected = {"in_proj.weight": (128, 32), "conv1d.weight": (64, 1, 4), "conv1d.bias": (64,),
                "x_proj.weight": (2 + 32, 64), "dt_proj.weight": (64, 2), "dt_proj.bias": (64,),
                "A_log": (64, 16), "D": (64,), "out_proj.weight": (32, 64)}
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == expected


def test_backend_selection_is_explicit():
    assert resolve_backend("torch") == "torch"
    assert resolve_backend("auto") == ("cuda" if cuda_backend_available() else "torch")
    with pytest.raises(ValueError, match="dynamics.backend"):
        resolve_backend("triton")
    if not cuda_backend_available():
        with pytest.raises(RuntimeError, match="needs a CUDA device"):
            resolve_backend("cuda")


@pytest.mark.skipif(not cuda_backend_available(), reason="needs CUDA and mamba-ssm (the gpu extra)")
def test_cuda_backend_matches_torch_backend():
    torch.manual_seed(0)
    ref = Mamba(32, d_state=16, backend="torch").cuda()
    cud = Mamba(32, d_state=16, backend="cuda").cuda()
    cud.load_state_dict(ref.state_dict())
    u = torch.randn(4, 100, 32, device="cuda")
    y_ref, (_, h_ref) = ref(u)
    y, (_, h) = cud(u)
    err = (y - y_ref).abs().max().item()
    print(f"max |cuda - torch| = {err:.3e}")
    assert err < 1e-4 and (h - h_ref).abs().max().item() < 1e-4
