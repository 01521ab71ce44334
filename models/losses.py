"""Training losses. Densities are spin-resolved AO matrices [B, T, 2, N, N] complex; S [B, N, N]; N_σ [B, 2].

Every term is >= 0 and exactly 0 at the target (or, for the penalties, on the physical manifold). Default weights
are the design guide's: reconstruction 1, derivative 10, Hermiticity 1, trace 5, idempotency 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch


def element_variance_weights(target: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """w_ij = 1 / (Var_t ρ_ij + eps), normalised to mean 1 per molecule: [B, T, 2, N, N] -> [B, 1, 2, N, N]."""
    var = target.real.var(dim=1, keepdim=True) + target.imag.var(dim=1, keepdim=True)
    w = 1.0 / (var + eps)
    return w / w.mean(dim=(-3, -2, -1), keepdim=True)


def reconstruction_loss(pred, target, weights=None) -> torch.Tensor:
    """Mean (weighted) |ρ_pred - ρ_ref|²."""
    err = (pred - target).abs().square()
    return (err * weights).mean() if weights is not None else err.mean()


def derivative_loss(pred, target, rho0, dt: float) -> torch.Tensor:
    """Mean |dρ_pred/dt - dρ_ref/dt|² with finite differences along time, ρ(0) = rho0 [B, 2, N, N] for both."""
    p = torch.cat([rho0[:, None], pred], dim=1)
    t = torch.cat([rho0[:, None], target], dim=1)
    return ((p.diff(dim=1) - t.diff(dim=1)) / dt).abs().square().mean()


def hermiticity_penalty(rho) -> torch.Tensor:
    return (rho - rho.mH).abs().mean()


def trace_penalty(rho, overlap, n_sigma) -> torch.Tensor:
    """Mean |tr(ρ_σ S) - N_σ|; S [B, N, N], N_σ [B, 2]."""
    s = overlap.to(rho.dtype)[:, None, None]
    tr = torch.diagonal(rho @ s, dim1=-2, dim2=-1).sum(-1).real  # [B, T, 2]
    return (tr - n_sigma[:, None]).abs().mean()


def idempotency_penalty(rho, overlap) -> torch.Tensor:
    """Mean |ρ S ρ - ρ| (per spin, AO basis)."""
    s = overlap.to(rho.dtype)[:, None, None]
    return (rho @ s @ rho - rho).abs().mean()


def scaled_l2(pred, target) -> torch.Tensor:
    """sqrt(Σ|Δρ|² / Σ|ρ_ref|²) per trajectory, averaged over the batch."""
    num = (pred - target).abs().square().flatten(1).sum(-1)
    den = target.abs().square().flatten(1).sum(-1).clamp_min(1e-30)
    return (num / den).sqrt().mean()


def dipole(rho, dipole_ints) -> torch.Tensor:
    """Electronic dipole -Σ_σ tr(ρ_σ r) [B, T, 3] from AO dipole integrals r [B, 3, N, N] (a.u., same origin)."""
    return -torch.einsum("btsij,bxji->btx", rho, dipole_ints.to(rho.dtype)).real


def relative_potential_loss(v_pred, v_target, v_ref, mask) -> torch.Tensor:
    """Fock supervision: Σ w|V_θ − V_xc|² / Σ w|V_ref − V_xc|² per molecule, batch mean (1 = no better than
    ``v_ref``, e.g. the frozen V_xc[ρ(0)]). Shapes [B, T, 2, N, N] complex (Löwdin); ``mask`` [B, N] basis mask.
    Weights w_ij = 1/(Var_t V_ij + 0.1·mean Var), zero on padding: elements that barely move count as much as
    those that swing (the variance weighting of ../seeds; the floor keeps constant elements finite)."""
    m2 = (mask[:, None, None, :, None] & mask[:, None, None, None, :]).to(v_target.real.dtype)  # [B,1,1,N,N]
    var = (v_target.real.var(dim=1, keepdim=True) + v_target.imag.var(dim=1, keepdim=True)) * m2
    mean_var = var.sum(dim=(-3, -2, -1), keepdim=True) / (2 * m2.sum(dim=(-3, -2, -1), keepdim=True))
    w = m2 / (var + 0.1 * mean_var + 1e-30)
    num = (w * (v_pred - v_target).abs().square()).flatten(1).sum(-1)
    den = (w * (v_ref - v_target).abs().square()).flatten(1).sum(-1)
    return (num / (den + 1e-3 * den.mean() + 1e-30)).mean()


def hamiltonian_alignment_loss(h_pred, h_ref, n_occ, w_frontier: float = 1.0, w_other: float = 0.1,
                               h_base=None) -> torch.Tensor:
    """WALoss (../seeds/003): the predicted Kohn–Sham matrix in the reference eigenbasis (eigh of ``h_ref``
    without gradient) must reproduce the reference orbital energies; occupied orbitals and the LUMO weigh
    ``w_frontier``, the rest ``w_other``. h_* [B, T, 2, N, N] complex (Löwdin); n_occ [B, 2] occupied orbitals per
    spin. With ``h_base`` (e.g. the frozen-xc matrix) the result is relative: 1 = no better than ``h_base``."""
    with torch.no_grad():
        eps, c = torch.linalg.eigh(h_ref)  # ascending: [B, T, 2, N], [B, T, 2, N, N]
        rank = torch.arange(eps.shape[-1], device=eps.device)
        weight = torch.where(rank <= n_occ[:, None, :, None], w_frontier, w_other)  # occupied + LUMO
    def err(h):
        return (weight * (torch.diagonal(c.mH @ h @ c, dim1=-2, dim2=-1).real - eps).square()).flatten(1).sum(-1)
    num = err(h_pred)
    if h_base is None:
        return num.mean()
    den = err(h_base.detach())
    return (num / (den + 1e-3 * den.mean() + 1e-30)).mean()


def relative_rollout_losses(states, target, start, dipole_ints) -> dict:
    """Unrolled-training terms, each relative to the trivial rollout ρ(t) = ρ(t0) per window (1 = trivial):
    density Σ|ρ − ρ_ref|² / Σ|ρ_ref − ρ_ref(t0)|², dipole Σ|μ − μ_ref|² / Σ|μ_ref − μ_ref(t0)|². A floor of
    10% of the batch-mean denominator keeps windows where nothing happens (before a pulse) from dominating.
    states, target [B, T, 2, N, N] AO; start [B, 2, N, N]; dipole_ints [B, 3, N, N]."""
    def rel(num, den):
        return (num / (den + 0.1 * den.mean() + 1e-30)).mean()
    d = rel((states - target).abs().square().flatten(1).sum(-1),
            (target - start[:, None]).abs().square().flatten(1).sum(-1))
    mu_p, mu_t = dipole(states, dipole_ints), dipole(target, dipole_ints)  # [B, T, 3]
    mu0 = dipole(start[:, None], dipole_ints)
    m = rel((mu_p - mu_t).square().flatten(1).sum(-1), (mu_t - mu0).square().flatten(1).sum(-1))
    return {"rollout_density": d, "rollout_dipole": m}


@dataclass(kw_only=True)
class LossConfig:
    """Weights of the training objective (``rtml.platform.train.objective``). Teacher-forced terms:
    reconstruction … scaled_l2 (design-guide weights). Kohn–Sham head only (other heads have no V_θ):
    ``xc_potential`` (Fock supervision, :func:`relative_potential_loss`) and ``hamiltonian_alignment``
    (:func:`hamiltonian_alignment_loss`), both relative to frozen xc — or, for ``xc_potential`` with
    ``xc_reference='linear'``, relative to linear xc (1 = no better than the exact kernel at ρ(0): the loss then
    measures only what the learned O(Δρ²) terms add). Unrolled (any head): ``rollout_density``,
    ``rollout_dipole`` (:func:`relative_rollout_losses`) over the window rolled out autoregressively, with
    truncated back-propagation every ``rollout_detach_every`` steps (0: never). ``RETIRED`` fields could only raise
    (the objective never had their inputs): old config files that carry them at 0 still load."""
    RETIRED: ClassVar[dict] = {"scaled_dipole": 0.0, "wavefunction_alignment": 0.0}  # removed in issue 29: 0 loads
    reconstruction: float = 1.0  # weight of the teacher-forced ρ error
    derivative: float = 10.0  # weight of the error in dρ/dt (finite differences)
    hermiticity: float = 1.0  # weight of the ρ − ρ† penalty
    trace: float = 5.0  # weight of the tr ρS − N penalty
    idempotency: float = 0.5  # weight of the idempotency penalty (Löwdin basis)
    scaled_l2: float = 0.0  # weight of sqrt(Σ|Δρ|² / Σ|ρ_ref|²)
    variance_weighting: bool = True  # weight matrix elements by their inverse variance over the window
    xc_potential: float = 1.0  # weight of Fock supervision: V_θ against the recorded V_xc (Kohn–Sham head)
    xc_reference: Literal["frozen", "linear"] = "frozen"  # what xc_potential is relative to (1 = no better than it)
    hamiltonian_alignment: float = 0.1  # weight of the Hamiltonian alignment term (Kohn–Sham head)
    rollout_density: float = 1.0  # weight of the ρ error over the window rolled out autoregressively
    rollout_dipole: float = 1.0  # weight of the dipole error over the rolled-out window
    rollout_detach_every: int = 64  # truncated back-propagation through the rollout every N steps (0: never)


def total_loss(pred, target, rho0, overlap, n_sigma, dt, cfg: LossConfig):
    """Weighted sum of the configured terms -> (total, {name: detached value})."""
    terms = {}
    w = element_variance_weights(target) if cfg.variance_weighting else None
    if cfg.reconstruction:
        terms["reconstruction"] = reconstruction_loss(pred, target, w)
    if cfg.derivative:
        terms["derivative"] = derivative_loss(pred, target, rho0, dt)
    if cfg.hermiticity:
        terms["hermiticity"] = hermiticity_penalty(pred)
    if cfg.trace:
        terms["trace"] = trace_penalty(pred, overlap, n_sigma)
    if cfg.idempotency:
        terms["idempotency"] = idempotency_penalty(pred, overlap)
    if cfg.scaled_l2:
        terms["scaled_l2"] = scaled_l2(pred, target)
    total = sum(getattr(cfg, k) * v for k, v in terms.items())
    return total, {k: float(v.detach()) for k, v in terms.items()}
