"""Every loss term is zero at the target (or on the physical manifold) and positive away from it."""

import pytest
import torch

from rtml.models import losses as L
from rtml.models.physics import lowdin


def _data(seed=0, B=2, T=5, n=6):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(B, n, n, generator=g, dtype=torch.float64)
    S = a @ a.mT / n + torch.eye(n, dtype=torch.float64)  # SPD overlap
    s_half, s_inv = lowdin(S)
    # idempotent spin densities: rotate an occupied projector in the orthonormal basis, go back to AO
    occ = torch.diag(torch.tensor([1.0, 1.0, 0, 0, 0, 0], dtype=torch.complex128))
    frames = []
    for t in range(T + 1):
        h = torch.randn(n, n, generator=g, dtype=torch.complex128) * 0.05 * t
        u = torch.linalg.matrix_exp(-1j * (h + h.mH))
        frames.append(u @ occ @ u.mH)
    rho_o = torch.stack(frames)[None, :, None].expand(B, T + 1, 2, n, n)
    si = s_inv.to(torch.complex128)[:, None, None]
    rho = si @ rho_o @ si
    n_sigma = torch.full((B, 2), 2.0, dtype=torch.float64)
    ints = torch.randn(B, 3, n, n, generator=g, dtype=torch.float64)
    return rho, S, s_half, n_sigma, ints + ints.mT


def test_losses_zero_at_target_positive_away():
    rho, S, _, n_sigma, _ = _data()
    target, rho0 = rho[:, 1:], rho[:, 0]
    bad = target + 1e-2 * torch.randn_like(target)
    w = L.element_variance_weights(target)
    pairs = {
        "reconstruction": lambda p: L.reconstruction_loss(p, target, w),
        "derivative": lambda p: L.derivative_loss(p, target, rho0, 0.2),
        "scaled_l2": lambda p: L.scaled_l2(p, target),
    }
    for name, fn in pairs.items():
        assert float(fn(target)) < 1e-12, name
        assert float(fn(bad)) > 1e-6, name
    for name, fn in {"hermiticity": L.hermiticity_penalty,
                     "trace": lambda p: L.trace_penalty(p, S, n_sigma),
                     "idempotency": lambda p: L.idempotency_penalty(p, S)}.items():
        assert float(fn(target)) < 1e-12, name
        assert float(fn(bad)) > 1e-6, name
    total, terms = L.total_loss(target, target, rho0, S, n_sigma, 0.2,
                                L.LossConfig(scaled_l2=1))
    assert float(total) < 1e-10 and set(terms) >= {"reconstruction", "derivative", "trace", "scaled_l2"}
    total_bad, _ = L.total_loss(bad, target, rho0, S, n_sigma, 0.2, L.LossConfig())
    assert float(total_bad) > 1e-4


def test_retired_loss_fields_load_at_zero_and_are_refused_otherwise():
    """``loss.scaled_dipole`` / ``loss.wavefunction_alignment`` were removed (the objective never had their inputs,
    so anything but 0 raised): old config files carrying them at 0 still load; another value is refused by name."""
    from rtml.platform.configio import ConfigError, from_dict

    cfg = from_dict(L.LossConfig, {"scaled_dipole": 0.0, "wavefunction_alignment": 0, "trace": 2.0}, "old.yaml", "loss.")
    assert cfg.trace == 2.0 and not hasattr(cfg, "scaled_dipole")
    with pytest.raises(ConfigError, match="old.yaml.*loss.scaled_dipole.*retired"):
        from_dict(L.LossConfig, {"scaled_dipole": 1.0}, "old.yaml", "loss.")
