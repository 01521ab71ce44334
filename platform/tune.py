"""``rtml tune SPACE [--train.section.field VALUE ...]``: Ray Tune sweeps over training runs (ASHA; Optuna search
when installed).

Each trial is a Tune function that builds a :class:`ray.train.torch.TorchTrainer` and calls ``fit()`` with
:class:`ray.tune.integration.ray_train.TuneReportCallback` (the Train V2 / Tune interop), named by its trial id.
The sweep is one parent MLflow run; each trial is a nested run. Re-running the same sweep name restores the
interrupted sweep (``Tuner.restore``): finished trials are kept, unfinished and errored ones continue from their
checkpoints, and their MLflow runs are re-opened, not duplicated.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path

from rtml.platform import tracking
from rtml.platform.configio import ConfigError, from_dict, to_dict, updated
from rtml.platform.train.config import TrainConfig
from rtml.platform.train.driver import absolute_paths
from rtml.platform.train.worker import train_fn
from rtml.platform.workers.launch import fit, open_run
from rtml.tune_spaces.sweep_space import SweepSpace


def load_space(name: str) -> SweepSpace:
    """``tune_spaces/<name>.py`` (module ``rtml.tune_spaces.<name>``) must define ``space() -> SweepSpace``."""
    try:
        mod = importlib.import_module(f"rtml.tune_spaces.{name}")
    except ModuleNotFoundError:
        here = Path(__file__).resolve().parent.parent / "tune_spaces"
        avail = sorted(p.stem for p in here.glob("*.py") if p.stem != "sweep_space")
        raise ConfigError("<command line>", "SPACE", f"one of {avail} (files in tune_spaces/)", name) from None
    return mod.space()


def trial_fn(config: dict) -> None:
    """One Tune trial = one Ray Train run, reporting to Tune through TuneReportCallback."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    trial_id = ray.tune.get_context().get_trial_id()
    cfg = updated(from_dict(TrainConfig, config["train"], "<sweep>"), config["params"], "<sweep params>")
    cfg.name, cfg.out, cfg.storage = f"{config['sweep']}-{trial_id}", f"{config['out']}/{trial_id}", config["storage"]
    cfg.scaling.cpus_per_worker, cfg.scaling.num_workers = config["cpus_per_worker"], config["num_workers"]
    cfg.tracking.experiment = config["experiment"]
    absolute_paths(cfg)
    run_id = open_run(cfg, config["tracking_uri"], parent_run_id=config["parent_run_id"])
    fit(cfg, config["tracking_uri"], run_id, train_fn, callbacks=[TuneReportCallback()])


@dataclass(kw_only=True)
class TuneConfig:
    space: str = "debug"  # search space: a file name in tune_spaces/ (debug, small); rtml tune's first word
    name: str | None = None  # sweep name (None: sweep-<space>); an existing one is resumed
    storage: str = "runs/tune"  # Ray Tune storage_path (trial checkpoints, the sweep's state): a path, or s3://bucket/prefix
    out: str | None = None  # trial outputs, local (None: <storage>/out; runs/tune-out when storage is a URL)
    tracking_uri: str | None = None  # MLflow tracking URI (None: $MLFLOW_TRACKING_URI, else ./mlflow.db)
    experiment: str = "rtml-sweeps"  # MLflow experiment of the sweep's parent run
    num_samples: int | None = None  # trials (None: the space's num_samples)
    # every trial's training config before the space's params: the space's base recipe and fixed values (rtml tune
    # sets it; the flags --train.section.field set fields of every trial)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        self.name = self.name or f"sweep-{self.space}"
        self.out = self.out or (f"{self.storage}/out" if "://" not in self.storage else "runs/tune-out")
        if self.num_samples is not None and self.num_samples < 1:
            raise ValueError(f"num_samples: expected None or an integer >= 1, got {self.num_samples}")


def _searcher(space: SweepSpace):
    if space.searcher == "random":
        return None
    if space.searcher == "optuna":
        if importlib.util.find_spec("optuna") is None:
            raise ConfigError("<sweep space>", "searcher", "'random', or install optuna for 'optuna'", "optuna")
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch()
    raise ConfigError("<sweep space>", "searcher", "'random' or 'optuna'", space.searcher)


def run(cfg: TuneConfig) -> dict:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    space = load_space(cfg.space)
    uri = tracking.resolve_uri(cfg.tracking_uri)
    tracking.check_reachable(uri)
    storage = cfg.storage.rstrip("/") if "://" in cfg.storage else str(Path(cfg.storage).resolve())
    parent = tracking.find_run(uri, cfg.experiment, "rtml.sweep", cfg.name)
    if parent is None:
        parent = tracking.start_run(uri, cfg.experiment, cfg.name, tags={"rtml.sweep": cfg.name,
                                                                         "rtml.space": cfg.space})
        tracking.log_params(uri, parent, {"space": cfg.space, "base": space.base, "metric": space.metric,
                                          "num_samples": cfg.num_samples or space.num_samples,
                                          **{f"search.{k}": str(v) for k, v in space.params.items()}})
    else:
        tracking.client(uri).update_run(parent, status="RUNNING")
    if not ray.is_initialized():
        ray.init(include_dashboard=False, configure_logging=False)
    param_space = {"train": to_dict(cfg.train), "params": space.params,
                   "sweep": cfg.name, "out": str(Path(cfg.out).resolve() / cfg.name), "storage": storage,
                   "tracking_uri": uri, "experiment": cfg.experiment, "parent_run_id": parent,
                   "cpus_per_worker": space.cpus_per_worker, "num_workers": space.num_workers}
    trainable = tune.with_resources(trial_fn, {"CPU": 0.01})
    path = f"{storage}/{cfg.name}"  # a local path or an object-store URL (s3://bucket/prefix: Ray's pyarrow fs)
    if tune.Tuner.can_restore(path):
        print(f"resuming sweep {cfg.name} from {path}")
        tuner = tune.Tuner.restore(path, trainable=trainable, param_space=param_space, resume_unfinished=True,
                                   resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable, param_space=param_space,
            tune_config=tune.TuneConfig(
                metric=space.metric, mode=space.mode, num_samples=cfg.num_samples or space.num_samples,
                max_concurrent_trials=space.max_concurrent_trials, search_alg=_searcher(space),
                scheduler=ASHAScheduler(grace_period=space.grace_period, reduction_factor=space.reduction_factor),
                trial_name_creator=lambda t: t.trial_id, trial_dirname_creator=lambda t: t.trial_id),
            run_config=tune.RunConfig(name=cfg.name, storage_path=storage))
    grid = tuner.fit()
    best = grid.get_best_result(metric=space.metric, mode=space.mode, scope="all")
    summary = {"sweep": cfg.name, "parent_run_id": parent, "tracking_uri": uri, "trials": len(grid),
               "errors": len(grid.errors), "best_params": best.config["params"],
               "best_metrics": {k: v for k, v in (best.metrics or {}).items() if isinstance(v, (int, float))},
               "best_trial": Path(best.path).name}
    tracking.log_params(uri, parent, {f"best.{k}": v for k, v in best.config["params"].items()})
    tracking.log_metrics(uri, parent, {f"best_{space.metric}": summary["best_metrics"].get(space.metric)}, step=0)
    write_text(f"{path}/rtml_summary.json", json.dumps(summary, indent=2, default=str))
    _close_children(uri, cfg.experiment, parent)
    tracking.client(uri).set_terminated(parent, status="FINISHED" if not grid.errors else "FAILED")
    return summary


def write_text(where: str, text: str) -> None:
    """A small text file at a local path or an object-store URL (through pyarrow, as Ray's storage)."""
    import pyarrow.fs

    if "://" not in where:
        Path(where).parent.mkdir(parents=True, exist_ok=True)
        Path(where).write_text(text)
        return
    fs, inner = pyarrow.fs.FileSystem.from_uri(where)
    with fs.open_output_stream(inner) as fh:
        fh.write(text.encode())


def _close_children(uri: str, experiment: str, parent: str) -> None:
    """Trials stopped early by ASHA leave their runs RUNNING: mark them KILLED."""
    c = tracking.client(uri)
    exp = c.get_experiment_by_name(experiment)
    for r in c.search_runs([exp.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'"):
        if r.info.status == "RUNNING":
            c.set_terminated(r.info.run_id, status="KILLED")
