"""Exact physics of density matrices: Löwdin basis, projection onto the physical manifold, unitary propagation.

All densities are spin-resolved, ``[*, 2, N, N]`` complex (alpha, beta), AO basis unless named ``*_o`` (Löwdin
orthonormal basis: ρ_o = S^½ ρ S^½, H_o = S^-½ H S^-½). In the Löwdin basis the constraints are tr ρ_o = N_σ,
ρ_o = ρ_o^†, ρ_o² = ρ_o (pure Kohn-Sham state), and the AO forms are tr(ρS) = N_σ, ρSρ = ρ.
"""

from __future__ import annotations

import torch


def lowdin(overlap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """S [B, N, N] real SPD -> (S^½, S^-½), both [B, N, N]; computed without autograd (S is data)."""
    with torch.no_grad():
        w, v = torch.linalg.eigh(overlap)
        if (w <= 0).any():
            raise ValueError(f"overlap matrix is not positive definite (smallest eigenvalue {w.min().item():.3e})")
        return (v * w.sqrt()[..., None, :]) @ v.mT, (v * w.rsqrt()[..., None, :]) @ v.mT


def hermitize(m: torch.Tensor) -> torch.Tensor:
    return 0.5 * (m + m.mH)


def sandwich(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """x m x for x [B, N, N] real and m [*, B, S, N, N] (spin axis broadcast)."""
    xs = x.to(m.dtype).unsqueeze(-3)
    return xs @ m @ xs


def spin_traces(rho_o: torch.Tensor) -> torch.Tensor:
    return torch.diagonal(rho_o, dim1=-2, dim2=-1).sum(-1).real  # [*, 2]


def rescale_trace(rho_o: torch.Tensor, n_sigma: torch.Tensor) -> torch.Tensor:
    """Scale each spin block so tr ρ_o = N_σ ([*, 2] or broadcastable); a spin with N_σ = 0 is set to zero."""
    tr = spin_traces(rho_o)
    scale = torch.where(tr.abs() > 1e-12, n_sigma / torch.where(tr.abs() > 1e-12, tr, 1.0), 0.0)
    return rho_o * scale[..., None, None].to(rho_o.dtype)


def mcweeny(rho_o: torch.Tensor, steps: int = 3) -> torch.Tensor:
    """McWeeny purification ρ <- 3ρ² - 2ρ³ (orthonormal basis), driving eigenvalues near 0/1 to 0/1."""
    for _ in range(steps):
        r2 = rho_o @ rho_o
        rho_o = 3 * r2 - 2 * r2 @ rho_o
    return rho_o


def project_density(rho_o: torch.Tensor, n_sigma: torch.Tensor, purify_steps: int = 3) -> torch.Tensor:
    """Density head projection: Hermitise, fix the trace, McWeeny-purify, fix the trace again (exact trace out)."""
    rho_o = rescale_trace(hermitize(rho_o), n_sigma)
    rho_o = hermitize(mcweeny(rho_o, purify_steps))
    return rescale_trace(rho_o, n_sigma)


def unitary_propagate(rho_o: torch.Tensor, h_o: torch.Tensor, dt: float | torch.Tensor) -> torch.Tensor:
    """ρ_o(t+Δt) = U ρ_o U^†, U = exp(-i H_o Δt) for Hermitian H_o [*, 2, N, N] (Hartree), Δt in a.u.

    ``torch.linalg.matrix_exp`` (scaling and squaring) is differentiable without an eigendecomposition, so gradients
    stay finite for degenerate H. The result is re-Hermitised (removes rounding asymmetry only)."""
    dt = torch.as_tensor(dt, dtype=h_o.real.dtype, device=h_o.device)
    u = torch.linalg.matrix_exp(-1j * dt.to(h_o.dtype) * h_o)
    return hermitize(u @ rho_o @ u.mH)


def violations(rho: torch.Tensor, overlap: torch.Tensor, n_sigma: torch.Tensor) -> dict[str, torch.Tensor]:
    """Max-abs constraint violations of AO densities rho [*, B, 2, N, N] with S [B, N, N]: dict of [*, B] tensors."""
    s = overlap.to(rho.dtype).unsqueeze(-3)
    rs = rho @ s
    red = tuple(range(-3, 0))
    return {
        "hermiticity": (rho - rho.mH).abs().amax(dim=red),
        "trace": (torch.diagonal(rs, dim1=-2, dim2=-1).sum(-1).real - n_sigma).abs().amax(dim=-1),
        "idempotency": (rs @ rho - rho).abs().amax(dim=red),
    }
