"""The per-worker training function ``train_fn(config)`` run by Ray Train on every rank.

Reads only ``config`` (the resolved :class:`TrainConfig` as a dict plus the MLflow run id). Resumes from
``ray.train.get_checkpoint()`` at the exact step; every ``checkpoint_every`` steps all ranks save their DeepSpeed
shards into one directory and report it. A non-finite loss or gradient on any rank stops every rank before the optimiser step,
so the last reported checkpoint is the last good one. Rank 0 writes MLflow metrics, scores held-out rollouts at
every evaluation (:mod:`rtml.platform.train.selection`), exports the best-scoring consolidated model
and runs the held-out rollout evaluation at the end; status and results reach the driver through MLflow
(:mod:`rtml.platform.workers.results`). ``config["out"]`` holds only per-rank progress files for operators.
"""

from __future__ import annotations

import time

import torch

from rtml.models.physics import violations
from rtml.platform.configio import from_dict
from rtml.platform.train.config import TrainConfig
from rtml.platform.train.data import WindowStream
from rtml.platform.train.deepspeed_engine import build_engine, set_distributed_env
from rtml.platform.train.export import export_model, held_out_ids
from rtml.platform.train.objective import (
    electrons_per_spin,
    finish_validation,
    needs_xc_potential,
    validation_metrics,
    window_loss,
)
from rtml.platform.train.selection import RolloutSelector, selection_items
from rtml.platform.workers import collectives, runtime

CKPT_TAG = "ckpt"


class EngineCheckpoint:
    """Every rank saves its DeepSpeed shards into the one checkpoint directory."""
    all_ranks = True

    def __init__(self, engine, selector: RolloutSelector | None = None):
        self.engine = engine
        self.selector = selector  # rank 0's best-so-far state travels in the checkpoint

    def save(self, directory: str, step: int) -> None:
        client = {"step": step, "selection": self.selector.state() if self.selector else None}
        self.engine.save_checkpoint(directory, tag=CKPT_TAG, client_state=client)

    def load(self, directory: str) -> int:
        _, client = self.engine.load_checkpoint(directory, tag=CKPT_TAG)
        if self.selector is not None:
            self.selector.load(client.get("selection"))
        return int(client["step"])


def train_fn(config: dict) -> None:
    cfg: TrainConfig = from_dict(TrainConfig, config["train"], "<train_fn config>")
    run = runtime.start_worker(config, cfg.name, cfg.scaling.cpus_per_worker, cfg.scaling.use_gpu, cfg.loop.seed)
    set_distributed_env(run.rank, run.world, run.local_rank)
    device = run.device
    engine = build_engine(cfg, device)
    selector = None
    if cfg.select.enabled and run.rank == 0:  # model selection by held-out rollouts (rank 0 exports)
        store, ids = held_out_ids(cfg)
        items = selection_items(store, ids, cfg.select.max_trajectories) if ids is None or ids else []
        selector = RolloutSelector(cfg, items) if items else None
    ckpt = EngineCheckpoint(engine, selector)
    start = runtime.resume(run, ckpt)

    d = cfg.data
    fock = needs_xc_potential(cfg.loss)
    stream = WindowStream(d.store, "train", d.horizons, d.steps_per_stage, d.batch_size, run.rank, run.world,
                          cfg.loop.seed, d.split_seed, d.split_fractions, xc_potential=fock,
                          max_geometries=d.max_geometries, stride=cfg.model.stride)
    val = WindowStream(d.val_store or d.store, "all" if d.val_store else "val", d.horizons[-1:], 1,
                       d.val_windows, run.rank, run.world, seed=12345, split_seed=d.split_seed,
                       split_fractions=d.split_fractions, xc_potential=fock, stride=cfg.model.stride)
    val_batches = [val.batch(0)]
    if stream.reader.too_short:  # on the run's record, not only in a worker's log
        run.log({"data/too_short_trajectories": len(stream.reader.too_short)}, start)

    if selector is not None and start == 0 and cfg.select.include_initial:  # the anchor is a candidate too
        run.log(selector.score(engine.module, 0), 0)
    acc, last_train = runtime.Metrics(), {}
    grads = runtime.GradientWatch(engine.module.parameters())
    for step, batch, wait in stream.iterate(start, cfg.loop.max_steps, d.prefetch):
        total, terms, pred, _ = window_loss(engine, batch, cfg.loss, device)
        # Every parameter must get a gradient on every rank, or ZeRO's bucketed all-reduce mismatches between
        # ranks: a rank whose windows have no p/d shells leaves those pair-group weights unused.
        total = total + 0.0 * sum(p.sum() for p in engine.module.parameters())
        if cfg.loop.nan_at_step is not None and step == cfg.loop.nan_at_step:
            total = runtime.inject_nan(total, cfg.loop.nan_in)
        engine.backward(total)
        if runtime.stop_if_nonfinite(run, float(total.detach()), step, start, cfg.loop.checkpoint_every,
                                     grads.pop()):
            return
        engine.step()
        with torch.no_grad():
            rho0 = batch.initial.to(device)
            viol = violations(pred.detach().transpose(0, 1), batch.overlap.to(device),
                              electrons_per_spin(rho0, batch.overlap.to(device)))
        acc.maximum(max_violation=max(float(v.max()) for v in viol.values()))
        acc.add(**terms, loss=float(total.detach()), data_wait_s=wait, windows=len(batch.traj_ids))
        acc.step()
        done = step + 1
        run.progress(step=done, resumed_from=start or None)
        if done % cfg.loop.log_every == 0 or done == cfg.loop.max_steps:
            red, maxima, n, seconds = acc.reduce()
            metrics = {k: v / n for k, v in red.items() if k not in ("windows", "data_wait_s")}
            metrics.update(maxima, windows_per_s=red["windows"] / seconds,
                           data_wait_frac=red["data_wait_s"] / (run.world * seconds), lr=engine.get_lr()[0],
                           horizon=stream.horizon(step))
            run.log({f"train/{k}": v for k, v in metrics.items()}, done)
            last_train = {"train_loss": metrics["loss"], "windows_per_s": metrics["windows_per_s"]}
        is_ckpt = done % cfg.loop.checkpoint_every == 0 or done == cfg.loop.max_steps
        if done % cfg.loop.eval_every == 0 or is_ckpt:
            vm = finish_validation(collectives.allreduce_dict(validation_metrics(engine.module, val_batches, cfg.loss,
                                                                             device)))
            if selector is not None:
                vm.update(selector.score(engine.module, done))
            run.log(vm, done)
            runtime.report(run, {"step": done, "status": "running", **last_train, **vm},
                           ckpt if is_ckpt else None, done)
            acc.t0 = time.perf_counter()  # validation time is not training throughput
    # results travel through MLflow: this node's disk may be invisible to the driver
    selected, last = None, None
    if selector is not None and selector.best is not None:  # export the best held-out rollouts, not the last
        if selector.best["step"] != cfg.loop.max_steps:  # the last weights stay available (model_last.pt)
            last = {k: v.detach().cpu().clone() for k, v in engine.module.state_dict().items()}
        engine.module.load_state_dict(selector.best["state"])
        selected = {"step": selector.best["step"], "score": selector.best["score"], "score_kind": cfg.select.score}
    runtime.export_from_rank0(run, lambda scratch: export_model(engine.module, cfg, scratch, run.uri, run.run_id,
                                                                selected, last))
