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

from rtml.cli.parsing import parse
from rtml.datasets.engine.run import EngineConfig
from rtml.datasets.engine.system import SystemConfig
from rtml.datasets.errors import DataError
from rtml.meta.adapt import METHODS, AdaptSettings, compare, format_comparison
from rtml.meta.plots import plot_comparison
from rtml.meta.support import check_basis, collect, generate_support, molecule_name
from rtml.meta.tasks import split_task
from rtml.platform import tracking
from rtml.platform.configio import to_dict
from rtml.platform.mlflow_model import log_model
from rtml.platform.modelio import load_model, save_model


@dataclass(kw_only=True)
class AdaptConfig:
    """Few-shot adaptation of one model to one molecule (``rtml adapt`` derives its flags from these fields)."""
    model: str  # model.pt, run directory, or MLflow URI runs:/<id>/model
    molecule: str  # catalog name or .xyz file
    support: list[str] = field(default_factory=list)  # Zarr store(s) or .h5 files with the trajectories
    shots: int = 5  # K support trajectories
    generate: int = 0  # generate this many support trajectories with the engine instead (0: use --support)
    query: int | None = None  # query trajectories (None: all the molecule's others; with --generate: 3)
    basis: str = SystemConfig.basis  # declared basis of the support data
    frames: int = EngineConfig.n_steps  # frames per generated trajectory
    out: str = "runs/adapt"  # folder for the adapted model, plots and summary.json
    tracking_uri: str | None = None  # MLflow tracking URI (None: $MLFLOW_TRACKING_URI, else ./mlflow.db)
    experiment: str = "rtml"  # MLflow experiment
    nest_under: str | None = None  # MLflow run id this run is nested under (a benchmark's parent run)
    settings: AdaptSettings = field(default_factory=AdaptSettings)


HELP = "few-shot adaptation to a molecule vs zero-shot and fine-tuning (MLflow)"


def main(argv: list[str]) -> int:
    return report(run(parse(AdaptConfig, argv, prog="rtml adapt", description=__doc__.split("\n\n")[0], flat=True)))


def _task(cfg: AdaptConfig, out: Path):
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
    return store, split_task(name, ids, cfg.shots, cfg.query, rng, store, fixed_query=True)


def run(cfg: AdaptConfig) -> dict:
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

    out = Path(cfg.out)
    parent = (getattr(model, "rtml_meta", None) or {}).get("mlflow_run_id", "")
    run_id = tracking.start_run(uri, cfg.experiment, f"adapt-{task.molecule}-k{cfg.shots}-s{cfg.settings.seed}",
                                cfg, tags={"rtml.kind": "adapt", "rtml.parent_run_id": parent,
                                           "rtml.molecule": task.molecule}, parent_run_id=cfg.nest_under)
    tracking.log_params(uri, run_id, {"k": cfg.shots, "inner_steps": res["steps"], "support_ids": task.support,
                                      "query_ids": task.query, "store": store,
                                      **{f"inner_lr.{g}": v for g, v in res["inner_lrs"].items()}})
    tracking.log_metrics(uri, run_id, res["metrics"], step=res["steps"])
    path = save_model(res["models"]["adapted"], out / "adapted.pt",
                      meta={"mlflow_run_id": run_id, "parent_run_id": parent, "molecule": task.molecule,
                            "support": task.support, **{k: v for k, v in (model.rtml_meta or {}).items()
                                                        if k == "meta_learner"}})
    plots = plot_comparison(res["results"], out / "plots")
    per_query = [{"id": r0["id"], "tier": r0.get("tier"),
                  **{w: r0[w]["dipole_nrmse"] for w in ("frozen_xc", "linear_xc", "trivial") if w in r0},
                  **{name: rs[j]["model"]["dipole_nrmse"] for name, rs in res["results"].items()}}
                 for j, r0 in enumerate(res["results"]["zero_shot"])]  # dipole nRMSE per query and method
    summary = {"run_id": run_id, "tracking_uri": uri, "parent_run_id": parent, "molecule": task.molecule,
               "support": task.support, "query": task.query, "store": store, "steps": res["steps"],
               "metrics": res["metrics"], "ridge_xc_skipped": res.get("ridge_xc_skipped"), "per_query": per_query,
               "adapted_model": str(path), "plots": [str(p) for p in plots],
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
    m = summary["metrics"]
    print(f"\n{summary['molecule']}: k={len(summary['support'])} support, {len(summary['query'])} query, "
          f"{summary['steps']} gradient steps (MLflow run {summary['run_id']}, parent {summary['parent_run_id']})")
    print(format_comparison(m))
    z, f, a = (m.get(f"{x}/dipole_nrmse") for x in METHODS)
    if z and f and a:
        print(f"dipole nRMSE adapted/zero-shot {a / z:.3f}, adapted/fine-tune {a / f:.3f}")
    if summary.get("ridge_xc_skipped"):
        print(f"ridge xc map not run: {summary['ridge_xc_skipped']}")
    scores = {k.split("/")[0]: v for k, v in m.items() if k.endswith("/dipole_nrmse") and not k.startswith("trivial/")}
    if scores:
        best = min(scores, key=scores.get)
        print(f"best on this query set (dipole nRMSE): {best} {scores[best]:.4g}")
    print(f"adapted model: {summary['adapted_model']}  plots: {', '.join(summary['plots'])}")
    return 0
