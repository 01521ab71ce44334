"""The per-worker meta-training function ``meta_train_fn(config)`` run by Ray Train on every rank.

Each rank draws its own tasks (``rng(seed, step, rank, i)``: disjoint draws, reproducible on resume), computes the
MAML meta-gradient of ``tasks.tasks_per_step`` tasks, and the meta-gradients (model and log inner learning rates)
are averaged over ranks with one all-reduce before the identical Adam step on every rank. Checkpoints (model,
learning rates, optimiser, step) are written by rank 0 every ``loop.checkpoint_every`` steps and reported to Ray;
``ray.train.get_checkpoint()`` resumes at the exact step. A non-finite meta-loss or meta-gradient on any rank stops all ranks
before the step (tags on the MLflow run, :mod:`rtml.platform.workers.results`, as in ordinary training). Rank 0 logs to MLflow and exports.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist

from rtml.meta.config import MetaTrainConfig
from rtml.meta.export import export_meta_model
from rtml.meta.learner import MetaLearner
from rtml.meta.objective import task_loss_fn
from rtml.meta.tasks import TaskSampler, WindowSource
from rtml.models.surrogate import Surrogate
from rtml.platform.configio import from_dict
from rtml.platform.modelio import load_model
from rtml.platform.workers import collectives, runtime

STATE = "meta_state.pt"


def initial_model(cfg: MetaTrainConfig, device, uri: str | None = None):
    if cfg.model.init:
        model = load_model(cfg.model.init, device, uri or cfg.tracking.uri).train()
        if getattr(model.cfg, "stride", 1) != 1:  # meta-learning tasks read windows at the data's own step
            raise ValueError(f"{cfg.model.init}: field 'model.stride': expected 1 for meta-training, got "
                             f"{model.cfg.stride}")
        return model
    return Surrogate(cfg.model.surrogate()).to(device).train()


def _average_grads(tensors: list[torch.Tensor], world: int) -> None:
    """Mean of ``.grad`` over ranks (missing grads count as zero) with one flat all-reduce."""
    for t in tensors:
        if t.grad is None:
            t.grad = torch.zeros_like(t)
    if world == 1:
        return
    flat = torch.cat([t.grad.reshape(-1) for t in tensors])
    collectives.allreduce_(flat)
    flat /= world
    i = 0
    for t in tensors:
        t.grad.copy_(flat[i:i + t.numel()].view_as(t))
        i += t.numel()


class MetaCheckpoint:
    """Rank 0 saves the meta-learner (model + inner learning rates), the outer optimiser and the step."""
    all_ranks = False

    def __init__(self, learner: MetaLearner, opt: torch.optim.Optimizer, device):
        self.learner, self.opt, self.device = learner, opt, device

    def save(self, directory: str, step: int) -> None:
        torch.save({"learner": self.learner.state_dict(), "optimizer": self.opt.state_dict(), "step": step},
                   Path(directory) / STATE)

    def load(self, directory: str) -> int:
        state = torch.load(Path(directory) / STATE, map_location=self.device, weights_only=True)
        self.learner.load_state_dict(state["learner"])
        self.opt.load_state_dict(state["optimizer"])
        return int(state["step"])


def meta_train_fn(config: dict) -> None:
    cfg: MetaTrainConfig = from_dict(MetaTrainConfig, config["train"], "<meta_train_fn config>")
    run = runtime.start_worker(config, cfg.name, cfg.scaling.cpus_per_worker, cfg.scaling.use_gpu, cfg.loop.seed)
    model = initial_model(cfg, run.device, run.uri)
    loss_fn = task_loss_fn(cfg.loss, run.device, cfg.tasks.objective)
    learner = MetaLearner(model, loss_fn, cfg.learner).to(run.device)
    opt = torch.optim.Adam([{"params": list(model.parameters()), "lr": cfg.optim.meta_lr},
                            {"params": list(learner.log_lrs.parameters()), "lr": cfg.optim.lr_lr}])
    ckpt = MetaCheckpoint(learner, opt, run.device)
    start = runtime.resume(run, ckpt)

    t = cfg.tasks
    sampler = TaskSampler(t.store, t.shots, t.query, t.horizon, t.molecules, t.exclude, seed=cfg.loop.seed)
    src = WindowSource(t.store, t.horizon)
    tensors = list(model.parameters()) + list(learner.log_lrs.parameters())
    acc, last_rate = runtime.Metrics(), {}
    for step in range(start, cfg.loop.max_steps):
        opt.zero_grad(set_to_none=True)
        meta, before = 0.0, 0.0
        for i in range(t.tasks_per_step):
            task = sampler.sample(step, run.rank, i)
            seed = [cfg.loop.seed, step, run.rank, i]
            support = src.batches(task.support, t.windows, cfg.learner.inner_steps, seed + [0])
            query = src.batches(task.query, t.windows, 1, seed + [1])
            loss = learner.meta_loss(support, query) / t.tasks_per_step
            if cfg.loop.nan_at_step is not None and step == cfg.loop.nan_at_step:
                loss = runtime.inject_nan(loss, cfg.loop.nan_in)
            loss.backward()
            meta += float(loss.detach())
            with torch.no_grad():
                before += float(learner.loss(learner.params(), query[0])) / t.tasks_per_step
        finite = [torch.isfinite(t.grad).all() for t in tensors if t.grad is not None]
        grads_bad = bool(finite) and not bool(torch.stack(finite).all())  # one sync
        if runtime.stop_if_nonfinite(run, meta, step, start, cfg.loop.checkpoint_every, grads_bad):
            return
        _average_grads(tensors, run.world)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(list(model.parameters()), cfg.optim.grad_clip))
        opt.step()
        acc.add(meta_loss=meta, query_loss_before=before, grad_norm=grad_norm)
        acc.step()
        done = step + 1
        run.progress(step=done, resumed_from=start or None)
        if done % cfg.loop.log_every == 0 or done == cfg.loop.max_steps:
            red, _, n, seconds = acc.reduce()
            metrics = {f"meta/{k}": v / n for k, v in red.items()}
            metrics["meta/adaptation_gain"] = red["query_loss_before"] / max(red["meta_loss"], 1e-30)
            metrics["meta/tasks_per_s"] = n * t.tasks_per_step / seconds
            metrics.update({f"inner_lr/{g}": lr for g, lr in learner.inner_lrs().items()})
            with torch.no_grad():  # ranks must hold identical parameters after every averaged step
                fp = float(sum(p.double().sum() for p in tensors))
            metrics["meta/rank_param_spread"] = (collectives.allreduce_dict({"x": fp}, dist.ReduceOp.MAX)["x"]
                                                 - collectives.allreduce_dict({"x": fp}, dist.ReduceOp.MIN)["x"])
            run.log(metrics, done)
            last_rate = {"tasks_per_s": metrics["meta/tasks_per_s"]}
        if done % cfg.loop.checkpoint_every == 0 or done == cfg.loop.max_steps:
            runtime.report(run, {"step": done, "status": "running", "meta_loss": meta, **last_rate}, ckpt, done)

    runtime.export_from_rank0(run, lambda scratch: export_meta_model(learner, cfg, scratch, run.uri, run.run_id))
