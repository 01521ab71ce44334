"""The driver side of a Ray Train run, shared by ``rtml train`` and ``rtml meta-train``: :func:`launch` opens (or
re-opens) the MLflow run, starts Ray, fits a ``TorchTrainer`` running the caller's ``train_fn`` and fetches the
results rank 0 logged. Re-running with the same ``name`` and ``storage`` resumes from the last checkpoint (Ray Train
restores its checkpoint manager from storage) and keeps writing to the same MLflow run; a config change outside
:data:`RESUMABLE` is refused by name.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from rtml.platform import tracking
from rtml.platform.configio import ConfigError, flatten, save_yaml, to_dict
from rtml.platform.workers import results
from rtml.platform.workers.progress import ProgressCallback


class TrainingError(RuntimeError):
    pass


class NonFiniteLossError(TrainingError):
    pass


def init_ray(cfg) -> None:
    import ray

    if ray.is_initialized():
        return
    address = cfg.scaling.address or os.environ.get("RAY_ADDRESS")
    ray.init(address=address, include_dashboard=False, log_to_driver=True, configure_logging=False,
             num_cpus=None if address else max(os.cpu_count() or 1, int(cfg.scaling.num_workers *
                                                                           cfg.scaling.cpus_per_worker + 0.999)))


def worker_env(cfg) -> dict:
    env = {"TORCH_EXTENSIONS_DIR": os.environ.get("TORCH_EXTENSIONS_DIR",
                                                  str(Path.home() / ".cache" / "torch_extensions")),
           "OMP_NUM_THREADS": str(max(1, int(cfg.scaling.cpus_per_worker)))}
    if not cfg.scaling.use_gpu:
        env["DS_ACCELERATOR"] = "cpu"
    return env


def build_trainer(cfg, uri: str, run_id: str, train_fn: Callable[[dict], None], callbacks=None):
    """A ``TorchTrainer`` running ``train_fn`` (the surrogate's :func:`rtml.platform.train.worker.train_fn`, or
    meta-training's) on ``cfg.scaling`` workers; any config with the sections ``scaling``, ``loop``, ``tracking``
    and the fields ``name``/``recipe``/``storage``/``out`` works."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    out = Path(cfg.out).resolve()
    storage = cfg.storage if "://" in cfg.storage else str(Path(cfg.storage).resolve())
    return TorchTrainer(
        train_fn,
        train_loop_config={"train": to_dict(cfg), "tracking_uri": uri, "run_id": run_id, "out": str(out)},
        torch_config=TorchConfig(backend="nccl" if cfg.scaling.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=cfg.scaling.num_workers, use_gpu=cfg.scaling.use_gpu,
                                     resources_per_worker={"CPU": cfg.scaling.cpus_per_worker},
                                     placement_strategy=cfg.scaling.placement),
        run_config=RunConfig(name=cfg.name, storage_path=storage, callbacks=callbacks,
                             failure_config=FailureConfig(max_failures=cfg.scaling.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=cfg.loop.keep_checkpoints),
                             worker_runtime_env={"env_vars": worker_env(cfg)}),
    )


CONFIG_VERSION_TAG = "rtml.config_version"
# Fields a resumed run may change (recorded as a new config version); any other change is refused.
RESUMABLE = ("loop.max_steps", "loop.log_every", "loop.keep_checkpoints", "loop.nan_at_step", "loop.nan_in", "out",
             "scaling.address", "scaling.max_failures", "scaling.cpus_per_worker", "scaling.placement", "tracking.",
             "eval.")


def check_resume_config(cfg, uri: str, run_id: str) -> dict:
    """Compare ``cfg`` with the config run ``run_id`` started with (its MLflow params, plus later versions' tags).
    A change outside :data:`RESUMABLE` raises :class:`ConfigError` naming every field (old -> new); allowed changes
    are returned as {field: [old, new]} for the caller to record as a new config version."""
    run = tracking.client(uri).get_run(run_id)
    started = dict(run.data.params)
    for v in range(2, int(run.data.tags.get(CONFIG_VERSION_TAG, "1")) + 1):  # later versions' allowed changes
        started.update({k: new for k, (_, new) in json.loads(run.data.tags.get(f"rtml.config_v{v}", "{}")).items()})
    now = {k: str(v)[:6000] for k, v in flatten(to_dict(cfg)).items()}
    changed = {k: [started.get(k), v] for k, v in now.items() if started.get(k, v) != v}
    refused = {k: ov for k, ov in changed.items() if not k.startswith(RESUMABLE)}
    if refused:
        raise ConfigError(f"<run '{cfg.name}' in {uri}>", ", ".join(sorted(refused)),
                          "the values the run started with, to resume it (or another name= for a new run)",
                          "; ".join(f"{k}: {o} -> {n}" for k, (o, n) in sorted(refused.items())))
    return changed


def open_run(cfg, uri: str, parent_run_id: str | None = None) -> str:
    """The MLflow run of ``cfg.name`` (re-opened when resuming, after :func:`check_resume_config`; allowed changes
    are recorded as config version N: tags ``rtml.config_version`` and ``rtml.config_vN`` = the changes), else a
    new one with the config as params."""
    existing = tracking.find_run(uri, cfg.tracking.experiment, "rtml.run_name", cfg.name)
    if existing:
        changed = check_resume_config(cfg, uri, existing)
        c = tracking.client(uri)
        if changed:
            version = int(c.get_run(existing).data.tags.get(CONFIG_VERSION_TAG, "1")) + 1
            c.set_tag(existing, CONFIG_VERSION_TAG, str(version))
            c.set_tag(existing, f"rtml.config_v{version}", json.dumps(changed))
            print(f"resuming run '{cfg.name}' with config version {version}: "
                  + ", ".join(f"{k} {o} -> {n}" for k, (o, n) in changed.items()))
        c.update_run(existing, status="RUNNING")
        return existing
    return tracking.start_run(uri, cfg.tracking.experiment, cfg.tracking.run_name or cfg.name, cfg,
                              tags={"rtml.run_name": cfg.name, "rtml.recipe": cfg.recipe},
                              parent_run_id=parent_run_id)


def checkpoint_uri(checkpoint, storage: str) -> str | None:
    """Where a Ray checkpoint lives, as a user can open it: the path, with the storage's scheme for object stores
    (Ray's ``Checkpoint.path`` is relative to its filesystem: ``bucket/prefix/...``)."""
    if checkpoint is None:
        return None
    path = str(checkpoint.path)
    return f"{storage.split('://', 1)[0]}://{path}" if "://" in storage and "://" not in path else path


def fit(cfg, uri: str, run_id: str, train_fn: Callable[[dict], None], callbacks=None) -> dict:
    """Run the trainer; returns the final reported metrics; raises TrainingError / NonFiniteLossError."""
    from ray.train import TrainingFailedError

    c = tracking.client(uri)
    results.mark_running(uri, run_id)
    try:
        progress = [ProgressCallback(cfg.name, cfg.loop.max_steps)]
        result = build_trainer(cfg, uri, run_id, train_fn, [*progress, *(callbacks or [])]).fit()
    except TrainingFailedError as exc:
        c.set_terminated(run_id, status="FAILED")
        raise TrainingError(f"training run '{cfg.name}' failed after {cfg.scaling.max_failures} restarts: "
                            f"{str(exc).strip().splitlines()[-1]}") from exc
    metrics = dict(result.metrics or {})
    status = results.read_status(uri, run_id)
    if status["status"] in results.NONFINITE:
        metrics.update(status)
        c.set_terminated(run_id, status="FAILED")
        ckpt = checkpoint_uri(result.checkpoint, cfg.storage) or "none (no checkpoint was written before)"
        what = "the loss" if status["status"] == "nan_loss" else "a gradient"
        raise NonFiniteLossError(f"training run '{cfg.name}': {what} became NaN/inf at step {metrics['step']}; "
                                 f"stopped before the optimiser step. Last good checkpoint (step "
                                 f"{metrics['last_good_step']}): {ckpt}")
    c.set_terminated(run_id, status="FINISHED")
    metrics["checkpoint"] = checkpoint_uri(result.checkpoint, cfg.storage)
    return metrics


def absolute_local(p: str | None) -> str | None:
    """A local path made absolute (workers do not run in the driver's directory); URLs, MLflow URIs
    (``runs:/``, ``models:/``), None and '' unchanged."""
    return p if not p or "://" in p or p.startswith(("runs:/", "models:/")) else str(Path(p).resolve())


def reachable_tracking_uri(cfg) -> str:
    """The run's MLflow tracking URI (``cfg.tracking.uri``, else the default), checked before Ray starts."""
    uri = tracking.resolve_uri(cfg.tracking.uri)
    tracking.check_reachable(uri)
    return uri


def launch(cfg, uri: str, t0: float, train_fn: Callable[[dict], None], tags: dict | None = None) -> dict:
    """The driver after the inputs are checked, for ``rtml train`` and ``rtml meta-train``: the resolved config
    saved in ``out``, the MLflow run opened (re-opened on resume) and tagged, Ray started, the trainer run, the
    results fetched from MLflow (:func:`finish`)."""
    out = Path(cfg.out)
    run_id = open_run(cfg, uri)  # first: a resume with a refused config change leaves nothing behind
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, out / "config.yaml")
    for k, v in (tags or {}).items():
        tracking.client(uri).set_tag(run_id, k, v)
    init_ray(cfg)
    metrics = fit(cfg, uri, run_id, train_fn)
    return finish(out, uri, run_id, metrics, t0)


def finish(out: Path, uri: str, run_id: str, metrics: dict, t0: float) -> dict:
    """Driver, after a good ``fit()``: the results rank 0 logged to MLflow, downloaded into ``out``, and the
    summary (rank 0's, with the final metrics and the local model path) written there."""
    got = results.fetch_results(uri, run_id, out)
    summary = json.loads(got["summary.json"].read_text()) if "summary.json" in got else {}
    if "model.pt" in got:
        summary["model"] = str(got["model.pt"])
    if "plots" in summary:
        summary["plots"] = [str(got[n]) for n in ("dipole.png", "spectrum.png") if n in got]
    if "model.pt" not in got:  # said, not silent: the export did not reach MLflow
        summary["model_missing"] = f"no model.pt among run {run_id}'s MLflow artifacts"
    summary.update(run_id=run_id, tracking_uri=uri, final=metrics, wall_seconds=time.perf_counter() - t0)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
