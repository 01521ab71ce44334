"""Held-out rollouts per field regime (weak / moderate / strong) and molecule: trained models against linear xc,
frozen xc and trivial, plus the cost per trajectory-step at batch 1 and batched next to the reference engine.

    python benchmarks/regimes.py --store runs/corpus/regimes.zarr --model runs/corpus-all/model.pt:all \
        [--model runs/corpus-third/model.pt:1/3 ...] --out runs/regimes

Writes ``regimes.json`` (every trajectory's metrics, the per-regime summaries, the step costs), ``regimes.md``
(the tables) and ``regimes_<label>.png`` (rtml / linear xc per molecule and tier) into ``--out``. The first model's
rollouts are also used for the baselines (they do not depend on the model). See rtml.platform.regimes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from rtml.cli import recipes
from rtml.datasets.store.zarr_store import TrajectoryStore
from rtml.datasets.xc_grid import is_lda
from rtml.models.baselines import FrozenXC, FrozenXCConfig, GridXC, LinearXC
from rtml.platform.configio import load_file
from rtml.platform.evaluate import PREDICTORS, RolloutEvalConfig, evaluate_trajectories, per_trajectory
from rtml.platform.modelio import load_model
from rtml.platform.regimes import (
    REGIME_METRICS,
    format_compare,
    format_regimes,
    plot_learning_curve,
    plot_regimes,
    step_costs,
    summarize_regimes,
)
from rtml.platform.train.config import TrainConfig


def training_trajectories(model_path: str) -> int:
    """How many trajectories a model was trained on (its run's config.yaml beside model.pt: data.store,
    data.max_geometries)."""
    p = Path(model_path)
    conf = (p if p.is_dir() else p.parent) / "config.yaml"
    if not conf.exists():
        raise SystemExit(f"--curve: {conf} not found (needs each model's run folder from `rtml train`)")
    cfg = load_file(TrainConfig, conf, recipes.TRAIN)
    idx = TrajectoryStore(cfg.data.store).index
    g = cfg.data.max_geometries
    return sum(1 for e in idx if g is None or int(e.get("geometry", 0)) < g)


def _cost_table(costs: dict, keys: list[str], suffix: str = "") -> list[str]:
    """Markdown rows: one per molecule, one column per key of :func:`step_costs` (``suffix`` dropped from headers)."""
    head = ["| molecule (xc) | " + " | ".join(k.removesuffix(suffix) for k in keys) + " |", "|" + "---|" * (len(keys) + 1)]
    return head + ["| " + g + " | " + " | ".join(f"{c.get(k, float('nan')):.3g}" for k in keys) + " |"
                   for g, c in costs.items()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", action="append", required=True, help="held-out store(s) with field-tier trajectories")
    p.add_argument("--model", action="append", default=[], help="PATH[:LABEL] of a model.pt (repeatable)")
    p.add_argument("--out", default="runs/regimes")
    p.add_argument("--max-steps", type=int, default=None, help="frames rolled out per trajectory (default: all)")
    p.add_argument("--batch", type=int, default=8, help="trajectories rolled out together in the evaluation")
    p.add_argument("--timing-steps", type=int, default=100, help="steps of the cost measurement (0: skip)")
    p.add_argument("--timing-batch", type=int, default=8, help="batched cost: this many fields on one geometry")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the per-core cost)")
    p.add_argument("--costs-only", action="store_true", help="only the cost tables (no rollout evaluation)")
    p.add_argument("--repeats", type=int, default=2, help="cost measurement: best of this many rollouts")
    p.add_argument("--curve", default=None, help="comma list of model labels: also plot their learning curve "
                   "(learning_curve.png) over their training-set sizes (run config: data.store, data.max_geometries)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    items = []
    for path in a.store:
        st = TrajectoryStore(path)
        items += [(st.read(i), i) for i in st.ids()]
    models, paths = {}, {}
    for spec in a.model or []:
        path, _, label = spec.partition(":")
        label = label or Path(path).parent.name
        models[label], paths[label] = load_model(path), path
    if not models:
        models = {"baselines": None}
    sizes = {}
    for k in a.curve.split(",") if a.curve else []:  # checked before the (long) evaluation
        if k not in paths:
            raise SystemExit(f"--curve: label {k!r} is not among the models {list(paths)}")
        sizes[k] = training_trajectories(paths[k])
    results, summaries, t0 = {}, {}, time.perf_counter()
    first = None
    for label, model in ({} if a.costs_only else models).items():
        cfg = RolloutEvalConfig(max_trajectories=len(items), max_steps=a.max_steps, batch=a.batch,
                                baselines=first is None)
        t1 = time.perf_counter()
        res = evaluate_trajectories(model, items, cfg, progress=True)
        if first is not None:  # baselines from the first model's pass
            for r, r0 in zip(res, first):
                r.update({w: r0[w] for w in PREDICTORS if w != "model" and w in r0})
        first = first or res
        results[label] = per_trajectory(res)
        summaries[label] = summarize_regimes(results[label])
        print(f"{label}: evaluated {len(res)} trajectories in {time.perf_counter() - t1:.0f} s")
    costs = {}
    if a.timing_steps:
        seen = {}
        for traj, i in items:
            seen.setdefault((traj.molecule, traj.functional), (traj, i))
        for (mol, xc), (traj, i) in seen.items():
            preds = {"linear_xc": LinearXC(), "frozen_xc": FrozenXC(), **({"grid_xc": GridXC()} if is_lda(xc) else {}),
                     **{f"model:{k}": m for k, m in models.items() if m is not None}}
            for k in sorted({m.cfg.stride for m in models.values() if m is not None and m.cfg.stride > 1}):
                exact = FrozenXCConfig(linear_response="exact", stride=k)  # the physics competitors at that step
                preds[f"linear_xc_lr:k{k}"] = LinearXC(exact)
                if is_lda(xc):
                    preds[f"grid_xc_lr:k{k}"] = GridXC(exact)
            costs[f"{mol} ({xc})"] = step_costs(preds, traj, a.timing_steps, a.timing_batch, repeats=a.repeats)
    report = ["# Held-out rollouts per field regime", "",
              (f"stores: {', '.join(a.store)}; models: {', '.join(f'{k}' for k in models)}; "
              f"{len(items)} trajectories; wall {time.perf_counter() - t0:.0f} s"), ""]
    for m in REGIME_METRICS if summaries else ():
        report += [f"## {m}", "", format_compare(summaries, m) if len(models) > 1 else
                   format_regimes(summaries[next(iter(models))], metric=m), ""]
    if costs:
        report += [("## ms per trajectory-step (1 thread; @1 = batch 1, "
                   f"@{a.timing_batch} = {a.timing_batch} fields on one geometry)"), ""]
        first = next(iter(costs.values()))
        report += _cost_table(costs, [k for k in first if k != "dt" and not k.endswith(("/ms_per_au", "/setup_ms"))])
        for suffix, title in (("/ms_per_au", ("ms per simulated a.u. (each predictor at its own step: a model of "
                                             "stride k steps k·dt):")),
                              ("/setup_ms", "per-geometry set-up, ms (left out of the per-step costs above):")):
            report += ["", title, ""] + _cost_table(costs, [k for k in first if k.endswith(suffix)], suffix)
    for label, s in summaries.items():
        if any(r.get("ratio") is not None for r in s["rows"]):
            plot_regimes(s, out / f"regimes_{label.replace('/', '-')}.png")
    if sizes:
        plot_learning_curve({k: summaries[k] for k in sizes}, sizes, out / "learning_curve.png")
        report += ["", "learning curve (training trajectories): " + ", ".join(f"{k} {v}" for k, v in sizes.items())]
    (out / "regimes.md").write_text("\n".join(report) + "\n")
    (out / "regimes.json").write_text(json.dumps({"stores": a.store, "summaries": summaries, "costs": costs,
                                                  "per_trajectory": results}, indent=1, default=float))
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
