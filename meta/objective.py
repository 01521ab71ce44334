"""Few-shot task losses, as ``loss_fn(module, batch) -> scalar`` for the meta-learner and the fine-tuning baseline.

* ``teacher`` — rtml's teacher-forced window loss (reconstruction + derivative terms) divided by the batch's mean
  squared one-step change mean|ρ(t+Δt) − ρ(t)|²: the one-step error relative to the trivial one-step predictor.
* ``rollout`` (default) — the model rolls out autoregressively over the window from its first frame (one reference
  frame before it warms up the recurrent state and gives the first Δρ, as in evaluation), and the loss is
  mean|ρ_model(t) − ρ_ref(t)|² / mean|ρ_ref(t) − ρ_ref(t0)|²: the squared scaled error relative to the trivial
  rollout ρ(t) = ρ(t0). It is what the rollout metrics measure; fine-tuning a teacher-forced model with it is what
  makes its rollouts usable (see meta/README.md).

Both divide by data constants: raw losses are ~1e-5 and differ between molecules, which left Adam (eps 1e-8) and
the inner learning rates without signal.
"""

from __future__ import annotations

import torch

from rtml.meta.learner import Functional
from rtml.models.inputs import MoleculeBatch
from rtml.models.rollout import rollout
from rtml.platform.train.objective import batch_dt, window_loss

OBJECTIVES = ("teacher", "rollout")


def rollout_error(model, batch, device) -> torch.Tensor:
    """Relative squared rollout error of ``model`` over the windows of ``batch`` (first frame = ρ(t0 − Δt))."""
    mol = MoleculeBatch.from_window(batch).to(device)
    rho = batch.rho.to(device)  # [B, T+2, 2, N, N] complex64
    T = rho.shape[1] - 2
    res = rollout(model, mol, rho[:, 1], batch.field[:, 1:].to(device), T, batch_dt(batch), store_every=1,
                  context=rho[:, :1])
    target = rho[:, 2:].to(res.states.dtype)  # [B, T, 2, N, N]
    scale = float((target - rho[:, 1:2].to(target.dtype)).abs().square().mean()) + 1e-30
    return (res.states - target).abs().square().mean() / scale


def task_loss_fn(loss_cfg, device, objective: str = "rollout"):
    if objective not in OBJECTIVES:
        raise ValueError(f"objective: expected one of {OBJECTIVES}, got {objective!r}")

    def teacher(module, batch):
        rho = batch.rho  # [B, T+2, 2, N, N] complex64 (first frame = ρ(t0 - Δt))
        scale = float((rho[:, 2:] - rho[:, 1:-1]).abs().square().mean()) + 1e-30
        return window_loss(module, batch, loss_cfg, device)[0] / scale

    def unrolled(module, batch):
        if isinstance(module, Functional):
            return module.apply(rollout_error, batch, device)
        return rollout_error(module, batch, device)

    return teacher if objective == "teacher" else unrolled
