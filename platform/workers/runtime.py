"""The worker runtime shared by ``train_fn`` (:mod:`rtml.platform.train.worker`) and ``meta_train_fn``
(:mod:`rtml.meta.worker`): functions and a checkpointer protocol, not a framework — each loop stays explicit and
keeps only what differs (its step body and its checkpoint payload).

Shared behaviour, tested once (``tests/test_runtime.py``):

* **resume** — :func:`resume` loads ``ray.train.get_checkpoint()`` through the loop's :class:`Checkpointer` and
  returns the exact step to continue from (logged as ``resumed_from_step``);
* **NaN policy** — :func:`stop_if_nonfinite`: a non-finite loss or gradient (:class:`GradientWatch`) on *any*
  rank stops every rank before the optimiser step; rank 0 records it on the MLflow run (:mod:`rtml.platform.workers.results`) with the last good
  checkpoint step (:func:`last_good_step`), and the driver raises ``NonFiniteLossError``;
* **metrics** — :class:`Metrics` accumulates per-step values, all-reduces sums and maxima over ranks at log time;
  :meth:`WorkerRun.log` writes to MLflow from rank 0 only;
* **checkpoint and report** — :func:`report` saves (every rank or rank 0, as the checkpointer says) into a
  temporary directory and hands it to ``ray.train.report``;
* **export** — :func:`export_from_rank0` runs the loop's export into node-local scratch that is logged to MLflow and
  removed: results never depend on a disk the driver may not see.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import ray.train
import torch
import torch.distributed as dist

from rtml.platform import tracking
from rtml.platform.workers import results
from rtml.platform.workers.collectives import allreduce_dict


def write_progress(out: Path, rank: int, **info) -> None:
    """Tiny per-rank status file (pid, step, attempt) for operators and the fault-tolerance test; never read by
    the driver (status travels through Ray results and MLflow)."""
    p = out / "progress" / f"rank{rank}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "time": time.time(), **info}))
    tmp.replace(p)


@dataclass(kw_only=True)
class WorkerRun:
    """What every rank knows about its run: rank, world size, device, the MLflow run, the operators' ``out``."""
    rank: int
    world: int
    local_rank: int
    device: torch.device
    uri: str
    run_id: str
    out: Path
    name: str
    storage: str | None = None  # the run's Ray storage (checkpoints): where rank 0 keeps files MLflow refused
    checkpointed: int | None = None  # the step of the last checkpoint this rank reported or resumed from

    def log(self, metrics: dict, step: int) -> None:
        if self.rank == 0:
            tracking.log_metrics(self.uri, self.run_id, metrics, step=step)

    def progress(self, **info) -> None:
        write_progress(self.out, self.rank, checkpointed=self.checkpointed, **info)


def start_worker(config: dict, name: str, cpus_per_worker: float, use_gpu: bool, seed: int) -> WorkerRun:
    """The prelude of every worker loop: Ray's context, torch threads, seed and device."""
    ctx = ray.train.get_context()
    torch.set_num_threads(max(1, int(cpus_per_worker)))
    torch.manual_seed(seed)
    local = ctx.get_local_rank()
    return WorkerRun(rank=ctx.get_world_rank(), world=ctx.get_world_size(), local_rank=local,
                     device=torch.device(f"cuda:{local}" if use_gpu else "cpu"), uri=config["tracking_uri"],
                     run_id=config["run_id"], out=Path(config["out"]), name=name,
                     storage=config["train"].get("storage"))


class Checkpointer(Protocol):
    """A loop's checkpoint payload. ``all_ranks``: every rank writes its part (DeepSpeed shards) or only rank 0
    writes the whole state."""
    all_ranks: bool

    def save(self, directory: str, step: int) -> None: ...

    def load(self, directory: str) -> int:
        """Restore the state; returns the step to continue from."""
        ...


class CheckpointLayoutError(RuntimeError):
    """A checkpoint whose tensors do not fit the model this code builds (another architecture or rtml version)."""


def load_checkpoint(ckpt: Checkpointer, directory: str) -> int:
    """``ckpt.load(directory)``; a checkpoint of another model layout is refused by name, not with torch's
    size-mismatch traceback (e.g. one written before issue 29 cut the decoder's dead source rows)."""
    try:
        return int(ckpt.load(directory))
    except RuntimeError as exc:
        text = str(exc)
        if not any(s in text for s in ("size mismatch", "Missing key(s)", "Unexpected key(s)")):
            raise
        first = next((ln.strip() for ln in text.splitlines() if "size mismatch" in ln or "key(s)" in ln), "")
        raise CheckpointLayoutError(
            f"checkpoint {directory}: its model layout differs from the model this code builds ({first[:200]}); "
            "it was written by another architecture or an older rtml (before issue 29 the decoder carried source "
            "rows it multiplied by zero). Resume it with the rtml version that wrote it, or start a new run "
            "(another --name); exported model.pt files of old runs still load (rtml.platform.modelio)") from None


def resume(run: WorkerRun, ckpt: Checkpointer) -> int:
    """The step to start from: that of ``ray.train.get_checkpoint()`` (restored into the loop), else 0."""
    start, got = 0, ray.train.get_checkpoint()
    if got is not None:
        with got.as_directory() as d:
            start = load_checkpoint(ckpt, d)
        run.log({"resumed_from_step": start}, start)
        run.checkpointed = start
    run.progress(step=start, resumed_from=start if got is not None else None)
    return start


def last_good_step(start: int, step: int, checkpoint_every: int) -> int:
    """The step of the last checkpoint at or before ``step`` (``start`` when none was written since resuming)."""
    return max(start, (step // checkpoint_every) * checkpoint_every)


class GradientWatch:
    """Flags a non-finite gradient of any watched parameter as backward computes it (tensor hooks run on the local
    gradient, before DeepSpeed's bucketed reduction or a ZeRO partitioning that leaves ``.grad`` empty); the flag
    stays on the parameters' device until :meth:`pop` reads and clears it (one sync per step)."""

    def __init__(self, parameters):
        self.flag: torch.Tensor | None = None
        self.handles = [p.register_hook(self._see) for p in parameters if p.requires_grad]

    def _see(self, grad: torch.Tensor) -> None:
        bad = ~torch.isfinite(grad).all()
        self.flag = bad if self.flag is None else self.flag | bad

    def pop(self) -> bool:
        """Whether any gradient since the last ``pop`` was non-finite; resets."""
        flag, self.flag = self.flag, None
        return bool(flag) if flag is not None else False


class _PoisonGradient(torch.autograd.Function):
    """Identity forward, NaN backward (fault injection for the gradient guard)."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


def inject_nan(loss: torch.Tensor, where: str) -> torch.Tensor:
    """Fault injection (``loop.nan_at_step``): the loss itself NaN (``where='loss'``) or a finite loss whose
    gradients are NaN (``'gradient'``)."""
    return loss * float("nan") if where == "loss" else _PoisonGradient.apply(loss)


def any_rank_nonfinite(loss: float, grads_bad: bool = False) -> str | None:
    """``'nan_loss'`` when the loss is NaN/inf on any rank, else ``'nan_gradient'`` when a gradient is, else None
    (every rank gets the same answer: one all-reduce of two flags)."""
    votes = allreduce_dict({"loss": float(not torch.isfinite(torch.tensor(float(loss)))), "grad": float(grads_bad)},
                           dist.ReduceOp.MAX)
    return "nan_loss" if votes["loss"] else "nan_gradient" if votes["grad"] else None


def stop_if_nonfinite(run: WorkerRun, loss: float, step: int, start: int, checkpoint_every: int,
                      grads_bad: bool = False) -> bool:
    """True (and the run marked, reported and stopped on every rank) when ``loss`` or, with ``grads_bad`` from a
    :class:`GradientWatch`, a gradient is NaN/inf on any rank; call it after backward, before the optimiser step."""
    status = any_rank_nonfinite(loss, grads_bad)
    if status is None:
        return False
    info = {"step": step, "status": status, "last_good_step": last_good_step(start, step, checkpoint_every)}
    if run.rank == 0:  # the driver reads the run's tags: Ray's result carries the last *checkpointed* metrics
        results.mark_nonfinite(run.uri, run.run_id, step, info["last_good_step"], status)
    ray.train.report(info)
    run.progress(step=step, status=status)
    return True


class Metrics:
    """Per-step values summed (``add``) or maximised (``maximum``) between log steps, reduced over ranks."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.maxima: dict[str, float] = {}
        self.n, self.t0 = 0, time.perf_counter()

    def add(self, **values: float) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)

    def maximum(self, **values: float) -> None:
        for k, v in values.items():
            self.maxima[k] = max(self.maxima.get(k, float("-inf")), float(v))

    def step(self) -> None:
        self.n += 1

    def reduce(self) -> tuple[dict, dict, int, float]:
        """-> (sums over ranks, maxima over ranks, steps summed over ranks, seconds since the last reset); resets."""
        sums = allreduce_dict({**self.sums, "__n": self.n})
        maxima = allreduce_dict(dict(self.maxima), dist.ReduceOp.MAX) if self.maxima else {}
        n, seconds = int(sums.pop("__n")), time.perf_counter() - self.t0
        self.reset()
        return sums, maxima, n, seconds


def report(run: WorkerRun, metrics: dict, ckpt: Checkpointer | None = None, step: int | None = None) -> None:
    """``ray.train.report(metrics)``, with a checkpoint of ``step`` when ``ckpt`` is given (written by every rank
    or by rank 0, as ``ckpt.all_ranks`` says). Once the checkpoint is in storage the rank's progress file says
    ``checkpointed: step`` (Ray's controller registers it at its next poll of the workers)."""
    if ckpt is None:
        ray.train.report(metrics)
        return
    if ckpt.all_ranks or run.rank == 0:
        with tempfile.TemporaryDirectory() as tmp:
            ckpt.save(tmp, step)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    else:
        ray.train.report(metrics)
    run.checkpointed = step
    run.progress(step=step)


class ExportError(RuntimeError):
    """Rank 0 could not log its end-of-run files to MLflow; the message names where they were kept instead."""


def export_from_rank0(run: WorkerRun, export: Callable[[Path], object]) -> None:
    """Rank 0 runs ``export(scratch)`` (which logs its files to the MLflow run); the node-local scratch is removed.

    If the export fails (MLflow unreachable, a full disk), the files written so far are copied to the run's
    storage (``<storage>/<name>/export-<time>``: shared by every node, like the checkpoints) and
    :class:`ExportError` names that place; Ray then restarts the worker group from the last checkpoint (the final
    step: only the export is redone), and after ``scaling.max_failures`` the driver's error carries the name."""
    if run.rank != 0:
        return
    scratch = results.worker_scratch(run.name)
    try:
        export(scratch)
    except Exception as exc:  # whatever failed, the model files must not be lost with the scratch
        kept = results.keep_in_storage(scratch, run.storage, run.name) if run.storage else None
        raise ExportError(f"exporting run '{run.name}' to MLflow failed ({type(exc).__name__}: {exc}); "
                          + (f"its files are kept at {kept}" if kept else "no storage to keep its files")) from exc
    finally:
        results.discard_scratch(scratch)
