"""Model selection by held-out rollouts (``select`` section of the training config).

The one-step loss misleads (a learned xc term that fits 100× better can roll out worse, STACK_NOTES); what a user
gets is a rollout. So at every evaluation rank 0 rolls the model out on a fixed set of held-out trajectories
(chosen round-robin over molecules and field tiers so each is represented) and scores it against the linear-xc
propagator on the same trajectories; the best state seen is kept, travels in the checkpoint (a resumed run keeps
it) and is what the run exports. The score curve is logged to MLflow as ``select/*``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rtml.datasets.store.zarr_store import TrajectoryStore
from rtml.platform.evaluate import RolloutEvalConfig, evaluate_trajectories, tier_of
from rtml.platform.train.config import TrainConfig


def selection_items(store: str, ids: list[str] | None, n: int) -> list:
    """Up to ``n`` (trajectory, id) pairs of ``store`` (``ids``: a subset), round-robin over (tier, molecule)
    buckets, strong tier first, weak last (where linear xc is nearly exact and the anchor keeps the model close)."""

    st = TrajectoryStore(store)
    trajs = [(st.read(i), i) for i in (ids if ids is not None else st.ids())]
    buckets: dict = {}
    for t, i in trajs:
        buckets.setdefault((t.molecule, tier_of(t)), []).append((t, i))
    order = {"strong": 0, "moderate": 1, "weak": 2}
    keys = sorted(buckets, key=lambda k: (order.get(k[1], 3), k[0]))
    out, queues = [], [buckets[k] for k in keys]
    while len(out) < n and any(queues):
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop(0))
    return out


class RolloutSelector:
    """Scores a model on held-out rollouts (:meth:`score`) and keeps the best state (:attr:`best`)."""

    def __init__(self, cfg: TrainConfig, items: list):
        self.cfg = cfg.select
        self.items = items
        self.eval_cfg = RolloutEvalConfig(max_trajectories=len(items), max_steps=cfg.select.max_steps,
                                          context=cfg.eval.context, batch=8, grid_xc=False)
        self.linear: list[float] | None = None  # linear-xc dipole nRMSE per trajectory (computed once)
        self.best: dict | None = None  # {"score", "step", "state"}

    @torch.no_grad()
    def score(self, module: torch.nn.Module, step: int) -> dict:
        """Roll ``module`` out, update :attr:`best`; -> ``select/*`` metrics for MLflow."""
        was_training = module.training
        self.eval_cfg.baselines = self.linear is None
        try:
            res = evaluate_trajectories(module, self.items, self.eval_cfg)
        finally:
            module.train(was_training)
        if self.linear is None:
            self.linear = [r["linear_xc"]["dipole_nrmse"] for r in res]
        nrmse = np.array([r["model"]["dipole_nrmse"] for r in res], np.float64)
        ratio = nrmse / np.maximum(np.array(self.linear), 1e-12)
        score = float(np.exp(np.mean(np.log(ratio)))) if self.cfg.score == "ratio_to_linear" else float(np.mean(nrmse))
        if not math.isfinite(score):
            score = math.inf  # a diverged rollout is never selected
        if self.best is None or score < self.best["score"]:
            self.best = {"score": score, "step": step,
                         "state": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}}
        return {"select/score": score, "select/dipole_nrmse": float(np.mean(nrmse)),
                "select/ratio_to_linear_max": float(np.max(ratio)), "select/best_score": self.best["score"],
                "select/best_step": self.best["step"]}

    def state(self) -> dict | None:
        """What a checkpoint carries (the best state so far and the linear-xc reference numbers)."""
        return None if self.best is None else {"best": self.best, "linear": self.linear}

    def load(self, state: dict | None) -> None:
        if state:
            self.best, self.linear = state["best"], state["linear"]
