"""``rtml quickstart``: the main job end to end on embedded defaults (local Ray, local MLflow, built-in engine).

1. generate a training store with the PySCF reference engine on local Ray (H2, LiH, H2O; sampled geometries; kicks
   and ``mixed`` Gaussian pulses, amplitudes log-uniform over the weak, moderate and strong tiers, a third of them
   resonant) and a held-out store of *other* geometries and fields (another seed, not the catalog geometry) with
   long trajectories: one 2000-step kick (400 a.u.: enough to resolve the bright peaks; the weak tier) and one
   600-step strong pulse resonant with the first bright excitation per molecule (the strong tier);
2. train the surrogate with Ray Train + DeepSpeed on 2 local CPU workers (recipe ``rtml.cli.recipes.quickstart``);
3. evaluate rollouts on the held-out store against the reference, side by side with the frozen-xc, linear-xc and
   trivial physics baselines, per field regime (weak and strong rows), with plots; then the physics baselines at
   steps of 8·dt (linear xc with the exact linear response: cost per simulated a.u. and accuracy);
4. few-shot: MAML meta-training over the training molecules (Ray Train, starting from the trained model), then
   adaptation to a molecule held out of training (NH3; K support + 3 query trajectories generated on the spot),
   printed as a before/after table next to zero-shot and fine-tuning;
everything is in MLflow (``mlflow ui --backend-store-uri sqlite:///mlflow.db``).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rtml.cli import adapt, meta_train, recipes
from rtml.cli.parsing import parse
from rtml.cli.train import name_run, report
from rtml.datasets.generate import GenerateConfig, generate
from rtml.meta.adapt import AdaptSettings
from rtml.platform.evaluate import RolloutEvalConfig, aggregate, as_json, evaluate_store, format_table
from rtml.platform.train.driver import run as train


@dataclass(kw_only=True)
class QuickstartConfig:
    """The main job on embedded defaults (``rtml quickstart`` derives its flags from these fields)."""
    out: str = "runs/quickstart"  # folder for the stores, the trained and meta-trained models, plots
    molecules: tuple[str, ...] = ("h2", "lih", "h2o")  # training molecules (catalog names)
    n_geometries: int = 2  # training geometries per molecule
    n_heldout_geometries: int = 1  # held-out geometries per molecule (another seed)
    steps: int = 300  # frames per training trajectory
    heldout_kick_steps: int = 2000  # frames of the held-out kicked trajectories (spectra)
    heldout_pulse_steps: int = 600  # frames of the held-out resonant strong pulses
    train_steps: int = 90  # optimiser steps
    horizons: tuple[int, ...] = (16, 32, 64)  # training unroll lengths (steps), 30 optimiser steps each
    workers: int = 2  # Ray Train workers
    heldout_molecule: str = "nh3"  # molecule for the few-shot adaptation (not trained on)
    shots: int = 5  # K support trajectories of the held-out molecule
    meta_steps: int = 10  # MAML meta-training steps
    shot_frames: int = 150  # frames per generated support/query trajectory
    tracking_uri: str | None = None  # MLflow tracking URI (None: $MLFLOW_TRACKING_URI, else ./mlflow.db)


HELP = "the main job: generate -> train (Ray+DeepSpeed) -> evaluate -> few-shot, in MLflow"


def main(argv: list[str]) -> int:
    return run(parse(QuickstartConfig, argv, prog="rtml quickstart", description=__doc__.splitlines()[0]))


def run(cfg: QuickstartConfig) -> int:
    t0 = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    stores = {"train": str(out / "train.zarr"), "heldout": str(out / "heldout.zarr")}
    print(f"[1/4] reference data (PySCF RT-TDDFT, LDA/6-31G, dt 0.2 a.u., {cfg.steps} frames) on local Ray")
    # The long held-out kicks are the critical path: all three sets go to Ray at once, those first.
    # Held out: geometries from index 1 of another seed (index 0 is the catalog geometry, which training has).
    plan = (("heldout", ["kick"], cfg.heldout_kick_steps, cfg.n_heldout_geometries, 1),
            ("heldout", ["resonant"], cfg.heldout_pulse_steps, cfg.n_heldout_geometries, 1),
            ("train", ["kick", "mixed"], cfg.steps, cfg.n_geometries, 0))
    import ray

    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    with ThreadPoolExecutor(len(plan)) as pool:
        futures = []
        for name, fields, steps, n_geo, seed in plan:
            futures.append(pool.submit(generate, GenerateConfig(
                out=stores[name], molecules=list(cfg.molecules), steps=steps, fields=fields, n_geometries=n_geo,
                first_geometry=1 if name == "heldout" else 0, seed=seed, progress=False)))
            time.sleep(0.5)  # submission order = Ray's scheduling order
        for (name, fields, steps, _, _), fut in zip(plan, futures):
            rep = fut.result()
            if rep["failed"]:
                print(f"  {name}: failed trajectories: {rep['failed']}")
                return 1
            print(f"  {name}: {rep['planned']} trajectories ({'/'.join(fields)}, {steps} frames) -> {stores[name]}")
    t_data = time.perf_counter() - t0
    print(f"[2/4] training with Ray Train + DeepSpeed on {cfg.workers} CPU workers ({cfg.train_steps} steps)")
    tcfg = name_run(recipes.quickstart(stores["train"], stores["heldout"], str(out / "train"), str(out / "ray"),
                                       cfg.train_steps, cfg.workers, cfg.horizons), "rtml")
    tcfg.tracking.uri = cfg.tracking_uri
    t1 = time.perf_counter()
    summary = train(tcfg)
    t_train = time.perf_counter() - t1
    print("[3/4] held-out rollouts (other geometries and fields than training)")
    report(summary)
    summary["large_steps"] = large_steps(stores["heldout"])
    t2 = time.perf_counter()
    summary["adapt"] = few_shot(cfg, out, stores["train"], summary)
    summary.update(data_seconds=t_data, train_and_eval_seconds=t_train, few_shot_seconds=time.perf_counter() - t2,
                   total_seconds=time.perf_counter() - t0, stores=stores)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"done in {summary['total_seconds']:.0f} s (data {t_data:.0f} s, training + held-out evaluation "
          f"{t_train:.0f} s, few-shot {summary['few_shot_seconds']:.0f} s). MLflow: mlflow ui --backend-store-uri "
          f"{summary['tracking_uri']}   summary: {out / 'summary.json'}")
    return 0


def large_steps(store: str, stride: int = 8) -> dict:
    """The held-out set at steps of ``stride``·dt with the physics baselines (linear xc with and without the exact
    linear response, frozen xc): cost per simulated a.u. next to accuracy on the reference's frames. The quickstart's
    model steps dt (a model of stride 8 needs the ``stride8`` recipe's corpus)."""

    print(f"  the same held-out set at steps of {stride}·dt (physics only; rtml evaluate/benchmarks/large_steps.py "
          "for a model of that stride):")
    res = evaluate_store(None, store, None, RolloutEvalConfig(stride=stride, max_trajectories=6, batch=4),
                         progress=False)
    agg = aggregate(res)
    print(format_table({k: v for k, v in agg.items() if k.split("/")[1] in ("dipole_nrmse", "ms_per_au")}))
    return as_json(agg)


def few_shot(cfg: QuickstartConfig, out: Path, train_store: str, trained: dict) -> dict:
    """Meta-train from the trained model over the training molecules, then adapt to ``heldout_molecule``."""

    n_per_mol = 2 * cfg.n_geometries  # kick + mixed pulse per geometry
    shots = max(1, min(5, n_per_mol - 1))
    print(f"[4/4] few-shot: MAML meta-training ({cfg.meta_steps} steps over {', '.join(cfg.molecules)}), then "
          f"adaptation to {cfg.heldout_molecule} (never trained on) from k={cfg.shots} generated trajectories")
    mcfg = recipes.meta_small()
    mcfg.tasks.store, mcfg.model.init, mcfg.tasks.shots, mcfg.tasks.query = train_store, trained["model"], shots, 1
    mcfg.tasks.tasks_per_step, mcfg.tasks.windows, mcfg.learner.inner_steps = 1, 2, 2
    mcfg.loop.max_steps, mcfg.loop.checkpoint_every, mcfg.loop.log_every = cfg.meta_steps, max(1, cfg.meta_steps // 2), 5
    mcfg.scaling.num_workers, mcfg.out, mcfg.storage = cfg.workers, str(out / "meta"), str(out / "ray")
    mcfg.tracking.uri = cfg.tracking_uri
    mcfg = name_run(mcfg, "rtml-meta")  # a new timestamped run
    meta = meta_train.run(mcfg)
    meta_train.report(meta)
    acfg = adapt.AdaptConfig(model=meta["model"], molecule=cfg.heldout_molecule, generate=cfg.shots,
                             shots=cfg.shots, query=3, frames=cfg.shot_frames, out=str(out / "adapt"),
                             tracking_uri=cfg.tracking_uri,
                             settings=AdaptSettings(max_steps=cfg.shot_frames - 3))
    res = adapt.run(acfg)
    adapt.report(res)
    return {"meta_run_id": meta["run_id"], "meta_model": meta["model"], **{k: res[k] for k in (
        "run_id", "molecule", "support", "query", "metrics", "adapted_model", "plots")}}
