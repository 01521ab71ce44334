"""The per-worker training function ``train_fn(config)`` run by Ray Train on every rank.

Reads only ``config`` (the resolved :class:`TrainConfig` as a dict plus the MLflow run id). Resumes from
``ray.train.get_checkpoint()`` at the exact step; every ``checkpoint_every`` steps all ranks save their DeepSpeed
shards into one directory and report it. A non-finite loss on any rank stops every rank before the optimiser step,
so the last reported checkpoint is the last good one. Rank 0 writes MLflow metrics, exports the consolidated model
and runs the held-out rollout evaluation at the end; status and results reach the driver through MLflow
(:mod:`rtml.platform.train.results`). ``config["out"]`` holds only per-rank progress files for operators.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import ray.train
import torch
import torch.distributed as dist

from rtml.models.physics import violations
from rtml.platform import tracking
from rtml.platform.configio import from_dict
from rtml.platform.train import results
from rtml.platform.train.config import TrainConfig
from rtml.platform.train.data import WindowStream
from rtml.platform.train.engine import build_engine, set_distributed_env
from rtml.platform.train.export import export_model
from rtml.platform.train.objective import (
    electrons_per_spin,
    finish_validation,
    needs_xc_potential,
    validation_metrics,
    window_loss,
)

CKPT_TAG = "ckpt"


def allreduce_dict(values: dict, op=dist.ReduceOp.SUM) -> dict:
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(t, op=op)
    return dict(zip(keys, t.tolist()))


def write_progress(out: Path, rank: int, **info) -> None:
    """Tiny per-rank status file (pid, step, attempt) for operators and the fault-tolerance test."""
    p = out / "progress" / f"rank{rank}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "time": time.time(), **info}))
    tmp.replace(p)


def train_fn(config: dict) -> None:
    cfg: TrainConfig = from_dict(TrainConfig, config["train"], "<train_fn config>")
    uri, run_id = config["tracking_uri"], config["run_id"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    set_distributed_env(rank, world, ctx.get_local_rank())
    torch.set_num_threads(max(1, int(cfg.scaling.cpus_per_worker)))
    torch.manual_seed(cfg.loop.seed)
    device = torch.device(f"cuda:{ctx.get_local_rank()}" if cfg.scaling.use_gpu else "cpu")
    out = Path(config["out"])

    engine = build_engine(cfg, device)
    start = 0
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            _, client = engine.load_checkpoint(d, tag=CKPT_TAG)
        start = int(client["step"])
        if rank == 0:
            tracking.log_metrics(uri, run_id, {"resumed_from_step": start}, step=start)
    write_progress(out, rank, step=start, resumed_from=start if ckpt else None)

    d = cfg.data
    fock = needs_xc_potential(cfg.loss, cfg.model.head)
    stream = WindowStream(d.store, "train", d.horizons, d.steps_per_stage, d.batch_size, rank, world,
                          cfg.loop.seed, d.split_seed, d.split_fractions, d.cutoff, xc_potential=fock)
    val = WindowStream(d.val_store or d.store, "all" if d.val_store else "val", d.horizons[-1:], 1,
                       d.val_windows, rank, world, seed=12345, split_seed=d.split_seed,
                       split_fractions=d.split_fractions, cutoff=d.cutoff, xc_potential=fock)
    val_batches = [val.batch(0)]

    acc, t_last, step, last_train = {}, time.perf_counter(), start, {}
    for step, batch, wait in stream.iterate(start, cfg.loop.max_steps, d.prefetch):
        total, terms, pred, _ = window_loss(engine, batch, cfg.loss, device)
        # Every parameter must get a gradient on every rank, or ZeRO's bucketed all-reduce mismatches between
        # ranks: a rank whose windows have no p/d shells leaves those pair-group weights unused.
        total = total + 0.0 * sum(p.sum() for p in engine.module.parameters())
        if cfg.loop.nan_at_step is not None and step == cfg.loop.nan_at_step:
            total = total * float("nan")
        bad = allreduce_dict({"bad": float(not torch.isfinite(total))}, dist.ReduceOp.MAX)["bad"]
        if bad:
            info = {"step": step, "status": "nan_loss", "last_good_step": start_or_last(start, step, cfg)}
            if rank == 0:  # the driver reads the run's tags: Ray's result carries the last *checkpointed* metrics
                results.mark_nonfinite(uri, run_id, step, info["last_good_step"])
            ray.train.report(info)
            write_progress(out, rank, step=step, status="nan_loss")
            return
        engine.backward(total)
        engine.step()
        with torch.no_grad():
            rho0 = batch.initial.to(device)
            viol = violations(pred.detach().transpose(0, 1), batch.overlap.to(device),
                              electrons_per_spin(rho0, batch.overlap.to(device)))
        acc["max_violation"] = max(acc.get("max_violation", 0.0), max(float(v.max()) for v in viol.values()))
        for k, v in {**terms, "loss": float(total.detach()), "data_wait_s": wait, "windows": len(batch.traj_ids)}.items():
            acc[k] = acc.get(k, 0.0) + v
        acc["n"] = acc.get("n", 0) + 1
        done = step + 1
        write_progress(out, rank, step=done, resumed_from=start if ckpt else None)
        if done % cfg.loop.log_every == 0 or done == cfg.loop.max_steps:
            now = time.perf_counter()
            vmax = allreduce_dict({"v": acc.pop("max_violation")}, dist.ReduceOp.MAX)["v"]
            red = allreduce_dict(acc)
            n = red.pop("n")
            metrics = {k: v / n for k, v in red.items() if k not in ("windows", "data_wait_s")}
            metrics["max_violation"] = vmax
            metrics.update(windows_per_s=red["windows"] / (now - t_last), data_wait_frac=red["data_wait_s"] /
                           (world * (now - t_last)), lr=engine.get_lr()[0], horizon=stream.horizon(step))
            if rank == 0:
                tracking.log_metrics(uri, run_id, {f"train/{k}": v for k, v in metrics.items()}, step=done)
            last_train = {"train_loss": metrics["loss"], "windows_per_s": metrics["windows_per_s"]}
            acc, t_last = {}, now
        is_ckpt = done % cfg.loop.checkpoint_every == 0 or done == cfg.loop.max_steps
        if done % cfg.loop.eval_every == 0 or is_ckpt:
            vm = finish_validation(allreduce_dict(validation_metrics(engine.module, val_batches, cfg.loss, device)))
            if rank == 0:
                tracking.log_metrics(uri, run_id, vm, step=done)
            report = {"step": done, "status": "running", **last_train, **vm}
            if is_ckpt:
                with tempfile.TemporaryDirectory() as tmp:
                    engine.save_checkpoint(tmp, tag=CKPT_TAG, client_state={"step": done})
                    ray.train.report(report, checkpoint=ray.train.Checkpoint.from_directory(tmp))
            else:
                ray.train.report(report)
            t_last = time.perf_counter()
    if rank == 0:  # results travel through MLflow: this node's disk may be invisible to the driver
        scratch = results.worker_scratch(cfg.name)
        try:
            export_model(engine.module, cfg, scratch, uri, run_id)
        finally:
            results.discard_scratch(scratch)


def start_or_last(start: int, step: int, cfg: TrainConfig) -> int:
    """The step of the last checkpoint at or before ``step``."""
    return max(start, (step // cfg.loop.checkpoint_every) * cfg.loop.checkpoint_every)
