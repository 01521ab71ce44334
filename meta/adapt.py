"""Few-shot adaptation of a trained or meta-trained surrogate to one molecule, against two baselines.

Three models start from the same weights and are compared on the same query trajectories:

* ``zero_shot`` — no adaptation;
* ``finetune`` — plain Adam (``finetune_lr``) for ``steps`` gradient steps on the support windows, same loss;
* ``adapted`` — the MAML inner loop for the same ``steps`` on the same windows, with the inner learning rates the
  meta-learner stored in the model (``model.rtml_meta["meta_learner"]``), else ``inner_lr`` for every group.

Baselines on the same query trajectories: frozen xc, linear xc, the trivial ρ(t) = ρ(t0), and ``ridge_xc`` — the
per-molecule linear map ρ − ρ(0) → V_xc − V_xc(0) fitted by ridge regression on the support trajectories' recorded
V_xc inside the exact propagator, from scratch and as a correction to the exact kernel (``ridge_xc_anchored``)
(:mod:`rtml.models.ridge_xc`; the simplest few-shot learner; skipped, with the
reason in the result's ``ridge_xc_skipped``, where the support has no V_xc or the molecule is too large for it).

Query metrics: autoregressive rollouts (scaled L2, dipole nRMSE, spectrum nRMSE/overlap, see
:mod:`rtml.platform.evaluate`) and the task loss on query windows (``query_loss``).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch

from rtml.datasets.store.zarr_store import TrajectoryStore
from rtml.meta.config import LearnerConfig, task_loss_config
from rtml.meta.learner import MetaLearner
from rtml.meta.objective import task_loss_fn
from rtml.meta.tasks import Task, WindowSource
from rtml.models.ridge_xc import RidgeXC, fit_ridge_xc
from rtml.platform.evaluate import METRICS, RolloutEvalConfig, aggregate, evaluate_trajectory

METHODS = ("zero_shot", "finetune", "adapted")
RIDGES = {"ridge_xc": False, "ridge_xc_anchored": True}  # the ridge xc map from scratch / as a correction to K₀


@dataclass(kw_only=True)
class AdaptSettings:
    """How a model is adapted and evaluated (the same for MAML and fine-tuning)."""
    steps: int | None = None  # gradient steps, MAML and fine-tuning alike (None: 10)
    objective: Literal["rollout", "teacher"] | None = None  # task loss (None: the meta-learner's, else rollout)
    inner_lr: float = 1e-3  # inner learning rate when the model has no meta-learned ones
    finetune_lr: float = 1e-3  # Adam learning rate of the fine-tuning baseline
    horizon: int | None = None  # support window length, steps (None: the meta-learner's, else 16)
    windows: int = 4  # support windows per gradient step
    seed: int = 0  # support/query split and window draws
    max_steps: int | None = 100  # rollout frames per query trajectory (None: all)
    context: int = 2  # reference frames that warm up the model before each query rollout
    max_query: int = 8  # query trajectories evaluated at most


def learner_for(model, settings: AdaptSettings) -> tuple[MetaLearner, int]:
    """The model's meta-learner (learned per-group learning rates) or a plain one; -> (learner, window horizon)."""
    state = (getattr(model, "rtml_meta", None) or {}).get("meta_learner") or {}
    objective = settings.objective or state.get("objective", "rollout")
    loss_fn = task_loss_fn(task_loss_config(), torch.device("cpu"), objective)
    horizon = settings.horizon or int(state.get("horizon", 16))
    if state:
        return MetaLearner.from_state(model, loss_fn, state), horizon
    return MetaLearner(model, loss_fn, LearnerConfig(inner_lr=settings.inner_lr, meta_sgd=False)), horizon


def finetune(model, loss_fn, batches: list, steps: int, lr: float):
    """A copy of ``model`` after ``steps`` plain Adam steps over ``batches`` (cycled)."""
    tuned = copy.deepcopy(model).train()
    opt = torch.optim.Adam(tuned.parameters(), lr=lr)
    for j in range(steps):
        opt.zero_grad(set_to_none=True)
        loss_fn(tuned, batches[j % len(batches)]).backward()
        opt.step()
    return tuned.eval()


def maml_adapt(learner: MetaLearner, batches: list, steps: int):
    """A copy of the learner's model with the inner-loop-adapted parameters."""
    with torch.no_grad():
        params = learner.adapt(learner.params(), batches, steps=steps)
    adapted = copy.deepcopy(learner.model)
    adapted.load_state_dict({**adapted.state_dict(), **{k: v.detach() for k, v in params.items()}})
    adapted.rtml_meta = dict(getattr(learner.model, "rtml_meta", {}) or {})
    return adapted.eval()


def compare(model, store: str, task: Task, settings: AdaptSettings, progress=None) -> dict:
    """Adapt on ``task.support`` of ``store`` and evaluate the three models on ``task.query``.
    -> {"models": {method: module}, "results": {method or "ridge_xc": [per-trajectory rollout results]},
        "metrics": {"<method>/<metric>": mean}, "steps": n, "inner_lrs": {...}, "ridge_xc_skipped": why or None}"""

    model = model.eval()
    if getattr(model.cfg, "stride", 1) != 1:  # support windows are read at the data's own step
        raise ValueError(f"field 'model.stride': adaptation needs a model of stride 1, got {model.cfg.stride}")
    learner, horizon = learner_for(model, settings)
    steps = settings.steps or 10
    src = WindowSource(store, horizon)
    support = src.batches(task.support, settings.windows, steps, [settings.seed, 0])
    query = src.batches(task.query, settings.windows, 2, [settings.seed, 1])
    t0 = time.perf_counter()
    tuned = finetune(model, learner.loss_fn, support, steps, settings.finetune_lr)
    t1 = time.perf_counter()
    models = {"zero_shot": model, "finetune": tuned, "adapted": maml_adapt(learner, support, steps)}
    wall = {"finetune/adapt_s": t1 - t0, "adapted/adapt_s": time.perf_counter() - t1}  # the gradient steps alone
    ecfg = RolloutEvalConfig(max_trajectories=settings.max_query, max_steps=settings.max_steps,
                             context=settings.context, grid_xc=False)  # the table's columns: cols below
    st = TrajectoryStore(store)
    trajs = [st.read(i) for i in task.query[:settings.max_query]]
    results, metrics = {}, dict(wall)
    for name, m in models.items():
        with torch.no_grad():
            metrics[f"{name}/query_loss"] = float(np.mean([float(learner.loss_fn(m, b)) for b in query]))
        ecfg.baselines = name == "zero_shot"  # the physics baselines once (they do not depend on the model)
        results[name] = [evaluate_trajectory(m, t, ecfg, source=i) | {"id": i} for t, i in zip(trajs, task.query)]
        agg = aggregate(results[name])
        metrics.update({f"{name}/{k.split('/', 1)[1]}": v for k, v in agg.items() if k.startswith("model/")})
        if progress:
            progress(name)
    agg = aggregate(results["zero_shot"])
    metrics.update({k: v for k, v in agg.items() if k.startswith(("trivial/", "frozen_xc/", "linear_xc/"))})
    skipped = None
    for name, anchor in RIDGES.items():
        ridge = _ridge_baseline(st, task, trajs, ecfg, anchor)
        if isinstance(ridge, str):
            skipped = ridge
            continue
        results[name], metrics[f"{name}/fit_s"] = ridge
        metrics.update({f"{name}/{k.split('/', 1)[1]}": v for k, v in aggregate(results[name]).items()
                        if k.startswith("model/")})
    return {"models": models, "results": results, "metrics": metrics, "steps": steps,
            "inner_lrs": learner.inner_lrs(), "ridge_xc_skipped": skipped}


def _ridge_baseline(store, task: Task, query: list, ecfg: RolloutEvalConfig, anchor: bool):
    """(per-query-trajectory results of the ridge xc map fitted on every support frame, fit seconds), or why it
    cannot run (a string)."""
    t0 = time.perf_counter()
    try:
        w, _ = fit_ridge_xc([store.read(i) for i in task.support], list(task.support), anchor=anchor)
    except ValueError as err:
        return str(err)
    fit_s = time.perf_counter() - t0
    cfg = replace(ecfg, baselines=False)
    model = RidgeXC(w, anchor=anchor)
    return [evaluate_trajectory(model, t, cfg, source=i) | {"id": i} for t, i in zip(query, task.query)], fit_s


def format_comparison(metrics: dict) -> str:
    cols = (*METHODS, *RIDGES, "frozen_xc", "linear_xc", "trivial")
    rows = [f"{'metric':<20}" + "".join(f"{c:>14}" for c in ("zero-shot", "fine-tune", "adapted", "ridge xc",
                                                               "ridge+K₀", "frozen xc", "linear xc", "ρ(t)=ρ(t0)"))]
    for m in ("query_loss", *METRICS):
        vals = [metrics.get(f"{c}/{m}") for c in cols]
        if any(v is not None for v in vals):
            rows.append(f"{m:<20}" + "".join(f"{'' if v is None else f'{v:.4g}':>14}" for v in vals))
    return "\n".join(rows)
