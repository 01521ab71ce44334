"""The training objective on one batch of windows — one module for ``rtml train`` and ``rtml meta-train`` — and
the one-step validation metrics.

:func:`window_loss` = teacher-forced terms (one network pass over the window: density reconstruction/derivative/
penalties and, for the Kohn–Sham head, Fock supervision of V_θ against the recorded V_xc(t) and the Hamiltonian
alignment term) + unrolled terms (:func:`unrolled_losses`: the window rolled out autoregressively through the
head from its first frame, backpropagated through the unitary steps with truncation every
``loss.rollout_detach_every`` steps). Window convention (:class:`rtml.datasets.windows.WindowBatch`): a previous
frame ρ(t0 − Δt) (the first Δρ, recurrent warm-up, as in evaluation), the initial state ρ(t0), the targets.

``val_mse_ratio`` = MSE(model) / MSE(trivial ρ(t+Δt) = ρ(t)) on the same windows: below 1 means better than the
trivial baseline.
"""

from __future__ import annotations

import torch

from rtml.datasets.windows import WindowBatch
from rtml.models.inputs import MoleculeBatch
from rtml.models.kohn_sham import KohnShamOperators
from rtml.models.losses import (
    LossConfig,
    hamiltonian_alignment_loss,
    relative_potential_loss,
    relative_rollout_losses,
    total_loss,
)
from rtml.models.physics import violations
from rtml.models.rollout import rollout


def electrons_per_spin(rho0: torch.Tensor, overlap: torch.Tensor) -> torch.Tensor:
    """rho0 [B, 2, N, N] AO, S [B, N, N] -> N_σ [B, 2]."""
    return torch.diagonal(rho0 @ overlap.to(rho0.dtype)[:, None], dim1=-2, dim2=-1).sum(-1).real


def needs_xc_potential(loss_cfg: LossConfig) -> bool:
    """Whether training reads the recorded V_xc(t) (Fock supervision) from the store."""
    return bool(loss_cfg.xc_potential or loss_cfg.hamiltonian_alignment)


def window_loss(model, batch: WindowBatch, loss_cfg: LossConfig, device: torch.device, unrolled: bool = True):
    """-> (total loss, {term: float}, predictions [B, T, 2, N, N], targets [B, T, 2, N, N]).

    Predictions are the teacher-forced ones; ``unrolled`` adds the rollout terms (weights ``rollout_*``)."""
    mol = MoleculeBatch.from_window(batch).to(device)
    rho = batch.window_rho.to(device)  # [B, T+1, 2, N, N] complex64: ρ(t0), targets
    field = batch.window_field.to(device)  # [B, T+1, 3]
    vxc = batch.window_xc
    dt = batch.dt
    mid = batch.window_field_mid  # [B, T, 3] the field over each step (None: midpoints of the frame values)
    pred, v_theta = model(mol, rho, field, dt, rho_prev=batch.prev.to(device), return_potential=True,
                          field_mid=None if mid is None else mid.to(device))  # [B, T, 2, N, N]
    target, rho0 = rho[:, 1:], rho[:, 0]
    overlap = batch.overlap.to(device)
    total, terms = total_loss(pred, target, rho0, overlap, electrons_per_spin(rho0, overlap), dt, loss_cfg)
    if loss_cfg.xc_potential or loss_cfg.hamiltonian_alignment:
        if vxc is None:
            raise ValueError(f"loss.xc_potential/hamiltonian_alignment > 0 need the recorded V_xc(t) of the windows "
                             f"(trajectories {batch.traj_ids[:3]}...): read windows with xc_potential=True from a "
                             f"schema-2 store, or set both weights to 0")
        extra = kohn_sham_terms(mol, rho, field, vxc.to(device), v_theta, loss_cfg,
                                None if mid is None else mid.to(device))
        total = total + sum(getattr(loss_cfg, k) * v for k, v in extra.items())
        terms.update({k: float(v.detach()) for k, v in extra.items()})
    if unrolled and (loss_cfg.rollout_density or loss_cfg.rollout_dipole):
        extra = unrolled_losses(model, batch, device, loss_cfg.rollout_detach_every)
        total = total + loss_cfg.rollout_density * extra["rollout_density"] + \
            loss_cfg.rollout_dipole * extra["rollout_dipole"]
        terms.update({k: float(v.detach()) for k, v in extra.items()})
    return total, terms, pred, target


def kohn_sham_terms(mol: MoleculeBatch, rho, field, vxc, v_theta, loss_cfg: LossConfig, field_mid=None) -> dict:
    """Fock supervision of V_θ [B, T, 2, N, N] (Löwdin): targets are the midpoint V_xc ½(V(t) + V(t+Δt)) of
    the recorded AO frames ``vxc`` [B, T+1, 2, N, N]; both terms relative to the frozen V_xc[ρ(0)] (the potential
    term relative to linear xc, V_xc[ρ(0)] + K[½(ρ(t) + ρ(t+Δt)) − ρ(0)], with ``loss.xc_reference='linear'``)."""
    ops = KohnShamOperators.from_batch(mol.ks)
    v_mid = 0.5 * (vxc[:, 1:] + vxc[:, :-1]).transpose(0, 1)  # [T, B, 2, N, N] AO
    v_tgt = ops.to_orth_potential(v_mid).transpose(0, 1)  # [B, T, 2, N, N] Löwdin
    v0 = ops.vxc0_o[:, None].expand_as(v_tgt)
    rho_o = (ops.x_inv[:, None, None].to(torch.complex128) @ rho.to(torch.complex128)
             @ ops.x_inv[:, None, None].to(torch.complex128))  # [B, T+1, 2, N, N]
    rho_mid = 0.5 * (rho_o[:, 1:] + rho_o[:, :-1]).transpose(0, 1)  # [T, B, 2, N, N]
    out = {}
    if loss_cfg.xc_potential:
        v_ref = v0
        if loss_cfg.xc_reference == "linear":
            v_ref = v0 + ops.linear_xc(rho_mid).transpose(0, 1)  # [B, T, 2, N, N]: K is linear, so K at the midpoint
        out["xc_potential"] = relative_potential_loss(v_theta, v_tgt, v_ref, mol.basis_mask)
    if loss_cfg.hamiltonian_alignment:
        e_mid = (0.5 * (field[:, 1:] + field[:, :-1]) if field_mid is None else field_mid).transpose(0, 1)  # [T, B, 3]
        exact = (ops.h_o.unsqueeze(-3) + ops.coulomb(rho_mid) + ops.field_term(e_mid)).transpose(0, 1)
        n_occ = electrons_per_spin(rho[:, 0].to(torch.complex128), mol.overlap.to(torch.float64)).round()
        out["hamiltonian_alignment"] = hamiltonian_alignment_loss(exact + v_theta, exact + v_tgt, n_occ,
                                                                  h_base=exact + v0)
    return out


def unrolled_losses(model, batch: WindowBatch, device, detach_every: int = 0) -> dict:
    """Relative rollout errors (density, dipole; 1 = the trivial ρ(t) = ρ(t0)) of the window rolled out from its
    second frame, the first warming the recurrent state; differentiable (truncated every ``detach_every``)."""
    model = getattr(model, "module", model)  # a DeepSpeed engine's own .step() is the optimiser step
    mol = MoleculeBatch.from_window(batch).to(device)
    if mol.ks is None:
        raise ValueError("unrolled training needs the dipole integrals of the Kohn–Sham terms: read windows with "
                         "kohn_sham=True")
    rho0 = batch.initial.to(device)  # [B, 2, N, N] complex64
    mid = batch.window_field_mid
    res = rollout(model, mol, rho0, batch.window_field.to(device), batch.horizon, batch.dt, store_every=1,
                  context=batch.prev[:, None].to(device), detach_every=detach_every,
                  field_mid=None if mid is None else mid.to(device))
    target = batch.targets.to(device).to(res.states.dtype)
    return relative_rollout_losses(res.states, target, rho0.to(res.states.dtype), mol.ks.r_ints)


@torch.no_grad()
def validation_metrics(model, batches: list[WindowBatch], loss_cfg: LossConfig, device: torch.device) -> dict:
    """Sums over ``batches`` (so ranks can all-reduce them): loss, model and trivial MSE, max violations."""
    out = {"val_loss_sum": 0.0, "val_sq_err": 0.0, "val_sq_err_trivial": 0.0, "val_count": 0.0,
           "val_max_hermiticity": 0.0, "val_max_trace": 0.0, "val_max_idempotency": 0.0}
    for b in batches:
        total, _, pred, target = window_loss(model, b, loss_cfg, device, unrolled=False)
        trivial = b.inputs.to(device)
        out["val_loss_sum"] += float(total) * len(b.traj_ids)
        out["val_sq_err"] += float((pred - target).abs().square().sum())
        out["val_sq_err_trivial"] += float((trivial - target).abs().square().sum())
        out["val_count"] += len(b.traj_ids)
        rho0 = b.initial.to(device)
        v = violations(pred.transpose(0, 1), b.overlap.to(device), electrons_per_spin(rho0, b.overlap.to(device)))
        for k, val in v.items():
            out[f"val_max_{k}"] = max(out[f"val_max_{k}"], float(val.max()))
    return out


def finish_validation(sums: dict) -> dict:
    n = max(sums["val_count"], 1.0)
    return {"val_loss": sums["val_loss_sum"] / n, "val_mse_ratio": sums["val_sq_err"] / max(sums["val_sq_err_trivial"],
                                                                                            1e-30),
            **{k: sums[k] for k in sums if k.startswith("val_max_")}}
