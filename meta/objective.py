"""Few-shot task losses, as ``loss_fn(module, batch) -> scalar`` for the meta-learner and the fine-tuning baseline.

* ``teacher`` — rtml's teacher-forced window loss (reconstruction + derivative terms) divided by the batch's mean
  squared one-step change mean|ρ(t+Δt) − ρ(t)|²: the one-step error relative to the trivial one-step predictor.
* ``rollout`` (default) — the unrolled objective of ``rtml train`` (one module for both): the model rolls out
  autoregressively over the window from its first frame (one reference frame before it warms up the recurrent state
  and gives the first Δρ, as in evaluation); the loss is the squared density error plus the squared dipole error,
  each relative to the trivial rollout ρ(t) = ρ(t0) per window. It is what the rollout metrics measure.

Both divide by data constants: raw losses are ~1e-5 and differ between molecules, which left Adam (eps 1e-8) and
the inner learning rates without signal.
"""

from __future__ import annotations

import torch

from rtml.meta.learner import Functional
from rtml.platform.train.objective import unrolled_losses, window_loss

OBJECTIVES = ("teacher", "rollout")


def rollout_error(model, batch, device) -> torch.Tensor:
    """The unrolled objective of ``rtml train`` (:func:`rtml.platform.train.objective.unrolled_losses`): relative
    density + dipole rollout errors over the windows of ``batch`` (first frame = ρ(t0 − Δt)); 1 + 1 = trivial."""
    terms = unrolled_losses(model, batch, device)
    return terms["rollout_density"] + terms["rollout_dipole"]


def task_loss_fn(loss_cfg, device, objective: str = "rollout"):
    if objective not in OBJECTIVES:
        raise ValueError(f"objective: expected one of {OBJECTIVES}, got {objective!r}")

    def teacher(module, batch):
        scale = float((batch.targets - batch.inputs).abs().square().mean()) + 1e-30
        return window_loss(module, batch, loss_cfg, device, unrolled=False)[0] / scale

    def unrolled(module, batch):
        if isinstance(module, Functional):
            return module.apply(rollout_error, batch, device)
        return rollout_error(module, batch, device)

    return teacher if objective == "teacher" else unrolled
