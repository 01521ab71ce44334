"""The per-worker meta-training function ``meta_train_fn(config)`` run by Ray Train on every rank.

Each rank draws its own tasks (``rng(seed, step, rank, i)``: disjoint draws, reproducible on resume), computes the
MAML meta-gradient of ``tasks.tasks_per_step`` tasks, and the meta-gradients (model and log inner learning rates)
are averaged over ranks with one all-reduce before the identical Adam step on every rank. Checkpoints (model,
learning rates, optimiser, step) are written by rank 0 every ``loop.checkpoint_every`` steps and reported to Ray;
``ray.train.get_checkpoint()`` resumes at the exact step. A non-finite meta-loss on any rank stops all ranks
before the step (tags on the MLflow run, :mod:`rtml.platform.train.results`, as in ordinary training). Rank 0 logs to MLflow and exports.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import ray.train
import torch
import torch.distributed as dist

from rtml.meta.config import MetaTrainConfig
from rtml.meta.learner import MetaLearner
from rtml.meta.objective import task_loss_fn
from rtml.meta.tasks import TaskSampler, WindowSource
from rtml.platform import tracking
from rtml.platform.configio import from_dict
from rtml.platform.train import results
from rtml.platform.train.worker import allreduce_dict, write_progress

STATE = "meta_state.pt"


def initial_model(cfg: MetaTrainConfig, device, uri: str | None = None):
    from rtml.models.surrogate import Surrogate
    from rtml.platform.modelio import load_model

    if cfg.model.init:
        return load_model(cfg.model.init, device, uri or cfg.tracking.uri).train()
    return Surrogate(cfg.model.surrogate()).to(device).train()


def _average_grads(tensors: list[torch.Tensor], world: int) -> None:
    """Mean of ``.grad`` over ranks (missing grads count as zero) with one flat all-reduce."""
    for t in tensors:
        if t.grad is None:
            t.grad = torch.zeros_like(t)
    if world == 1:
        return
    flat = torch.cat([t.grad.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= world
    i = 0
    for t in tensors:
        t.grad.copy_(flat[i:i + t.numel()].view_as(t))
        i += t.numel()


def meta_train_fn(config: dict) -> None:
    cfg: MetaTrainConfig = from_dict(MetaTrainConfig, config["train"], "<meta_train_fn config>")
    uri, run_id, out = config["tracking_uri"], config["run_id"], Path(config["out"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(max(1, int(cfg.scaling.cpus_per_worker)))
    torch.manual_seed(cfg.loop.seed)
    device = torch.device(f"cuda:{ctx.get_local_rank()}" if cfg.scaling.use_gpu else "cpu")

    model = initial_model(cfg, device, uri)
    loss_fn = task_loss_fn(cfg.loss, device, cfg.tasks.objective)
    learner = MetaLearner(model, loss_fn, cfg.learner).to(device)
    opt = torch.optim.Adam([{"params": list(model.parameters()), "lr": cfg.optim.meta_lr},
                            {"params": list(learner.log_lrs.parameters()), "lr": cfg.optim.lr_lr}])
    start, ckpt = 0, ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            state = torch.load(Path(d) / STATE, map_location=device, weights_only=True)
        learner.load_state_dict(state["learner"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["step"])
        if rank == 0:
            tracking.log_metrics(uri, run_id, {"resumed_from_step": start}, step=start)
    write_progress(out, rank, step=start, resumed_from=start if ckpt else None)

    t = cfg.tasks
    sampler = TaskSampler(t.store, t.shots, t.query, t.horizon, t.molecules, t.exclude, seed=cfg.loop.seed)
    src = WindowSource(t.store, t.horizon)
    tensors = list(model.parameters()) + list(learner.log_lrs.parameters())
    acc, t_last, last_rate = {}, time.perf_counter(), {}
    for step in range(start, cfg.loop.max_steps):
        opt.zero_grad(set_to_none=True)
        meta, before = 0.0, 0.0
        for i in range(t.tasks_per_step):
            task = sampler.sample(step, rank, i)
            seed = [cfg.loop.seed, step, rank, i]
            support = src.batches(task.support, t.windows, cfg.learner.inner_steps, seed + [0])
            query = src.batches(task.query, t.windows, 1, seed + [1])
            loss = learner.meta_loss(support, query) / t.tasks_per_step
            if cfg.loop.nan_at_step is not None and step == cfg.loop.nan_at_step:
                loss = loss * float("nan")
            loss.backward()
            meta += float(loss.detach())
            with torch.no_grad():
                before += float(learner.loss(learner.params(), query[0])) / t.tasks_per_step
        bad = allreduce_dict({"bad": float(not torch.isfinite(torch.tensor(meta)))}, dist.ReduceOp.MAX)["bad"]
        if bad:
            last_good = max(start, (step // cfg.loop.checkpoint_every) * cfg.loop.checkpoint_every)
            info = {"step": step, "status": "nan_loss", "last_good_step": last_good}
            if rank == 0:
                results.mark_nonfinite(uri, run_id, step, last_good)
            ray.train.report(info)
            return
        _average_grads(tensors, world)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(list(model.parameters()), cfg.optim.grad_clip))
        opt.step()
        for k, v in {"meta_loss": meta, "query_loss_before": before, "grad_norm": grad_norm}.items():
            acc[k] = acc.get(k, 0.0) + v
        acc["n"] = acc.get("n", 0) + 1
        done = step + 1
        write_progress(out, rank, step=done, resumed_from=start if ckpt else None)
        if done % cfg.loop.log_every == 0 or done == cfg.loop.max_steps:
            red = allreduce_dict(acc)
            n = red.pop("n")
            metrics = {f"meta/{k}": v / n for k, v in red.items()}
            metrics["meta/adaptation_gain"] = red["query_loss_before"] / max(red["meta_loss"], 1e-30)
            metrics["meta/tasks_per_s"] = n * t.tasks_per_step / (time.perf_counter() - t_last)
            metrics.update({f"inner_lr/{g}": lr for g, lr in learner.inner_lrs().items()})
            with torch.no_grad():  # ranks must hold identical parameters after every averaged step
                fp = float(sum(p.double().sum() for p in tensors))
            metrics["meta/rank_param_spread"] = (allreduce_dict({"x": fp}, dist.ReduceOp.MAX)["x"]
                                                 - allreduce_dict({"x": fp}, dist.ReduceOp.MIN)["x"])
            if rank == 0:
                tracking.log_metrics(uri, run_id, metrics, step=done)
            last_rate = {"tasks_per_s": metrics["meta/tasks_per_s"]}
            acc, t_last = {}, time.perf_counter()
        if done % cfg.loop.checkpoint_every == 0 or done == cfg.loop.max_steps:
            report = {"step": done, "status": "running", "meta_loss": meta, **last_rate}
            if rank == 0:
                with tempfile.TemporaryDirectory() as tmp:
                    torch.save({"learner": learner.state_dict(), "optimizer": opt.state_dict(), "step": done},
                               Path(tmp) / STATE)
                    ray.train.report(report, checkpoint=ray.train.Checkpoint.from_directory(tmp))
            else:
                ray.train.report(report)
    if rank == 0:
        from rtml.meta.export import export_meta_model

        scratch = results.worker_scratch(cfg.name)
        try:
            export_meta_model(learner, cfg, scratch, uri, run_id)
        finally:
            results.discard_scratch(scratch)
