"""Exact physics of density matrices: Löwdin basis, spin traces, constraint violations (the unitary Magnus step is
:mod:`rtml.models.kohn_sham`).

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
