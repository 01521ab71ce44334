"""The training objective on one batch of windows (teacher-forced), and the one-step validation metrics.

``val_mse_ratio`` = MSE(model) / MSE(trivial ρ(t+Δt) = ρ(t)) on the same windows: below 1 means better than the
trivial baseline.
"""

from __future__ import annotations

import torch

from rtml.datasets.windows import WindowBatch
from rtml.models.inputs import MoleculeBatch
from rtml.models.losses import LossConfig, total_loss
from rtml.models.physics import violations


def batch_dt(batch: WindowBatch) -> float:
    dts = batch.time[:, 1] - batch.time[:, 0]
    if float(dts.max() - dts.min()) > 1e-6 * float(dts.abs().max()):
        raise ValueError(f"windows of one batch have different time steps {dts.tolist()} (trajectories "
                         f"{batch.traj_ids}); train on stores with one dt")
    return float(dts.mean())


def electrons_per_spin(rho0: torch.Tensor, overlap: torch.Tensor) -> torch.Tensor:
    """rho0 [B, 2, N, N] AO, S [B, N, N] -> N_σ [B, 2]."""
    return torch.diagonal(rho0 @ overlap.to(rho0.dtype)[:, None], dim1=-2, dim2=-1).sum(-1).real


def window_loss(model, batch: WindowBatch, loss_cfg: LossConfig, device: torch.device, prev_frame: bool = True):
    """-> (total loss, {term: float}, predictions [B, T, 2, N, N], targets [B, T, 2, N, N]).

    ``prev_frame``: the batch's first frame is ρ(t0 - Δt), which gives the first input its Δρ (as in a rollout)."""
    mol = MoleculeBatch.from_window(batch).to(device)
    rho = batch.rho.to(device)  # [B, T+1(+1), 2, N, N] complex64
    field = batch.field.to(device)  # [B, T+1(+1), 3]
    dt = batch_dt(batch)
    prev = rho[:, 0] if prev_frame else None
    if prev_frame:
        rho, field = rho[:, 1:], field[:, 1:]
    pred = model(mol, rho, field, dt, rho_prev=prev)  # [B, T, 2, N, N]
    target, rho0 = rho[:, 1:], rho[:, 0]
    overlap = batch.overlap.to(device)
    total, terms = total_loss(pred, target, rho0, overlap, electrons_per_spin(rho0, overlap), dt, loss_cfg)
    return total, terms, pred, target


@torch.no_grad()
def validation_metrics(model, batches: list[WindowBatch], loss_cfg: LossConfig, device: torch.device) -> dict:
    """Sums over ``batches`` (so ranks can all-reduce them): loss, model and trivial MSE, max violations."""
    out = {"val_loss_sum": 0.0, "val_sq_err": 0.0, "val_sq_err_trivial": 0.0, "val_count": 0.0,
           "val_max_hermiticity": 0.0, "val_max_trace": 0.0, "val_max_idempotency": 0.0}
    for b in batches:
        total, _, pred, target = window_loss(model, b, loss_cfg, device)
        trivial = b.rho[:, 1:-1].to(device)
        out["val_loss_sum"] += float(total) * len(b.traj_ids)
        out["val_sq_err"] += float((pred - target).abs().square().sum())
        out["val_sq_err_trivial"] += float((trivial - target).abs().square().sum())
        out["val_count"] += len(b.traj_ids)
        rho0 = b.rho[:, 1].to(device)
        v = violations(pred.transpose(0, 1), b.overlap.to(device), electrons_per_spin(rho0, b.overlap.to(device)))
        for k, val in v.items():
            out[f"val_max_{k}"] = max(out[f"val_max_{k}"], float(val.max()))
    return out


def finish_validation(sums: dict) -> dict:
    n = max(sums["val_count"], 1.0)
    return {"val_loss": sums["val_loss_sum"] / n, "val_mse_ratio": sums["val_sq_err"] / max(sums["val_sq_err_trivial"],
                                                                                            1e-30),
            **{k: sums[k] for k in sums if k.startswith("val_max_")}}
