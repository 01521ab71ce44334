"""``rtml adapt --model MODEL --molecule NAME_OR_XYZ --support STORE_OR_FILES --shots K [--generate K]``.

Few-shot adaptation of a trained or meta-trained model to one molecule: K support trajectories (from a Zarr store,
HDF5 files, or generated on the spot), the other trajectories of the molecule as queries; prints before/after
metrics next to the zero-shot and plain-Adam fine-tuning baselines (same steps, same start), saves the adapted
model and logs one MLflow run tagged with the parent model's run id.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtml.meta.adapt import METHODS, AdaptSettings


@dataclass(kw_only=True)
class AdaptConfig:
    """``support``: Zarr store(s) / .h5 files; ``generate``: make this many support trajectories (plus ``query``
    query trajectories) with the engine instead; ``basis``: the declared basis of the support data."""
    model: str
    molecule: str
    support: list[str] = field(default_factory=list)
    shots: int = 5
    generate: int = 0
    query: int | None = None  # query trajectories (None: all the molecule's others; with --generate: 3)
    basis: str = "6-31g"
    frames: int = 200  # frames of generated trajectories
    out: str = "runs/adapt"
    tracking_uri: str | None = None
    experiment: str = "rtml"
    settings: AdaptSettings = field(default_factory=AdaptSettings)


def add_parser(sub) -> None:
    p = sub.add_parser("adapt", help="few-shot adaptation to a molecule vs zero-shot and fine-tuning (MLflow)")
    p.add_argument("--model", required=True, help="model.pt, run directory, or MLflow URI runs:/<id>/model")
    p.add_argument("--molecule", required=True, help="catalog name or .xyz file")
    p.add_argument("--support", nargs="*", default=[], help="Zarr store(s) or .h5 files with the trajectories")
    p.add_argument("--shots", type=int, default=5, help="K support trajectories")
    p.add_argument("--generate", type=int, default=0, help="generate K support trajectories with the engine")
    p.add_argument("--query", type=int, default=None, help="query trajectories (default: all others; 3 generated)")
    p.add_argument("--basis", default="6-31g", help="declared basis of the support data")
    p.add_argument("--frames", type=int, default=200, help="frames per generated trajectory")
    p.add_argument("--steps", type=int, default=10, help="gradient steps (MAML and fine-tuning alike)")
    p.add_argument("--objective", choices=("rollout", "teacher"), default=None,
                   help="task loss (default: the meta-learner's, else rollout)")
    p.add_argument("--inner-lr", type=float, default=1e-3, help="inner LR when the model has no meta-learned LRs")
    p.add_argument("--finetune-lr", type=float, default=1e-3)
    p.add_argument("--rollout-steps", type=int, default=100, help="rollout frames per query trajectory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/adapt")
    p.add_argument("--tracking-uri", default=None)
    p.set_defaults(func=lambda a: report(run(AdaptConfig(
        model=a.model, molecule=a.molecule, support=a.support, shots=a.shots, generate=a.generate, query=a.query,
        basis=a.basis, frames=a.frames, out=a.out, tracking_uri=a.tracking_uri,
        settings=AdaptSettings(steps=a.steps, objective=a.objective, inner_lr=a.inner_lr, finetune_lr=a.finetune_lr, seed=a.seed,
                               max_steps=a.rollout_steps)))))


def _task(cfg: AdaptConfig, out: Path):
    from rtml.datasets.errors import DataError
    from rtml.meta.support import check_basis, collect, generate_support, molecule_name
    from rtml.meta.tasks import split_task

    name = molecule_name(cfg.molecule)
    if cfg.shots < 1:
        raise DataError("<command line>", "--shots", "an integer >= 1", str(cfg.shots))
    if cfg.generate:
        if cfg.generate < cfg.shots:
            raise DataError("<command line>", "--generate", f">= --shots={cfg.shots}", str(cfg.generate))
        store, ids = generate_support(cfg.molecule, cfg.generate + (cfg.query or 3), out / "support.zarr",
                                      cfg.basis, cfg.frames, seed=1000 + cfg.settings.seed)
    else:
        store, ids = collect(cfg.support, out / "support.zarr", name)
    check_basis(store, ids, cfg.basis)
    rng = np.random.default_rng([cfg.settings.seed, 7])
    return store, split_task(name, ids, cfg.shots, cfg.query, rng, store)


def run(cfg: AdaptConfig) -> dict:
    from rtml.meta.adapt import compare
    from rtml.platform import tracking
    from rtml.platform.modelio import load_model

    t0 = time.perf_counter()
    uri = tracking.resolve_uri(cfg.tracking_uri)
    tracking.check_reachable(uri)
    model = load_model(cfg.model, "cpu", uri)  # ModelFileError for non-rtml files and unknown MLflow URIs
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    store, task = _task(cfg, out)
    print(f"adapting to {task.molecule}: support {task.support} / query {task.query} ({store})")
    res = compare(model, store, task, cfg.settings, progress=lambda m: print(f"  evaluated {m}"))
    return _log(cfg, uri, model, store, task, res, time.perf_counter() - t0)


def _log(cfg: AdaptConfig, uri: str, model, store: str, task, res: dict, seconds: float) -> dict:
    import mlflow

    from rtml.meta.plots import plot_comparison
    from rtml.platform import tracking
    from rtml.platform.configio import to_dict
    from rtml.platform.mlflow_model import log_model
    from rtml.platform.modelio import save_model

    out = Path(cfg.out)
    parent = (getattr(model, "rtml_meta", None) or {}).get("mlflow_run_id", "")
    run_id = tracking.start_run(uri, cfg.experiment, f"adapt-{task.molecule}-k{cfg.shots}-s{cfg.settings.seed}",
                                cfg, tags={"rtml.kind": "adapt", "rtml.parent_run_id": parent,
                                           "rtml.molecule": task.molecule})
    tracking.log_params(uri, run_id, {"k": cfg.shots, "inner_steps": res["steps"], "support_ids": task.support,
                                      "query_ids": task.query, "store": store,
                                      **{f"inner_lr.{g}": v for g, v in res["inner_lrs"].items()}})
    tracking.log_metrics(uri, run_id, res["metrics"], step=res["steps"])
    path = save_model(res["models"]["adapted"], out / "adapted.pt",
                      meta={"mlflow_run_id": run_id, "parent_run_id": parent, "molecule": task.molecule,
                            "support": task.support, **{k: v for k, v in (model.rtml_meta or {}).items()
                                                        if k == "meta_learner"}})
    plots = plot_comparison(res["results"], out / "plots")
    summary = {"run_id": run_id, "tracking_uri": uri, "parent_run_id": parent, "molecule": task.molecule,
               "support": task.support, "query": task.query, "store": store, "steps": res["steps"],
               "metrics": res["metrics"], "adapted_model": str(path), "plots": [str(p) for p in plots],
               "seconds": seconds, "config": to_dict(cfg)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=run_id, log_system_metrics=False):
        for f in (out / "summary.json", path, *plots):
            mlflow.log_artifact(str(f))
        log_model(path)
    tracking.client(uri).set_terminated(run_id, status="FINISHED")
    return summary


def report(summary: dict) -> int:
    from rtml.meta.adapt import format_comparison

    m = summary["metrics"]
    print(f"\n{summary['molecule']}: k={len(summary['support'])} support, {len(summary['query'])} query, "
          f"{summary['steps']} gradient steps (MLflow run {summary['run_id']}, parent {summary['parent_run_id']})")
    print(format_comparison(m))
    z, f, a = (m.get(f"{x}/dipole_nrmse") for x in METHODS)
    if z and f and a:
        print(f"dipole nRMSE adapted/zero-shot {a / z:.3f}, adapted/fine-tune {a / f:.3f}")
    print(f"adapted model: {summary['adapted_model']}  plots: {', '.join(summary['plots'])}")
    return 0
