"""Few-shot benchmark on new molecules: every method on the same query trajectories, over k support
trajectories and seeds, per field group (kick / weak / moderate / strong).

    python benchmarks/few_shot.py --model runs/qs-final/meta/model.pt --multitask-model runs/corpus/all/model.pt \
        --store runs/few_shot/new.zarr --molecules hcl h2s --shots 1 3 5 10 --query 3 --seeds 0 1 2 \
        --rollout-steps 200 --out runs/few_shot

Methods (``rtml adapt`` computes all but the multi-task pair; one adapt run per molecule, k and seed and model):
MAML-adapted, zero-shot and fine-tune (same steps, same start) of the meta-trained ``--model``; zero-shot and
fine-tune of the multi-task-trained ``--multitask-model``; the per-molecule ridge xc map fitted on the support's
recorded V_xc, from scratch and as a correction to the exact kernel; linear xc, frozen xc, trivial (no data). Per seed the query set is the same for every k (the last
``--query`` ids of the seed's permutation) and the supports are nested.

MLflow: one parent run (``few-shot-<molecules>``), every adapt run nested under it; the parent gets the table
(``few_shot.md``), the rows (``few_shot.json``) and the error-vs-k plot (``few_shot.png``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from rtml.cli.adapt import AdaptConfig, run
from rtml.meta.adapt import AdaptSettings
from rtml.platform import tracking

# column -> (adapt run of which model, its per-query key)
METHODS = {"adapted": ("meta", "adapted"), "finetune": ("meta", "finetune"), "zero_shot": ("meta", "zero_shot"),
           "mt_finetune": ("multitask", "finetune"), "mt_zero_shot": ("multitask", "zero_shot"),
           "ridge_xc": ("meta", "ridge_xc"), "ridge_xc_anchored": ("meta", "ridge_xc_anchored"),
           "linear_xc": ("meta", "linear_xc"), "frozen_xc": ("meta", "frozen_xc")}
GROUPS = ("moderate+strong", "kick", "weak")


def _group(row: dict) -> str:
    if "kick" in row["id"]:
        return "kick"
    return "moderate+strong" if row["tier"] in ("moderate", "strong") else str(row["tier"])


def collect(a, parent: str, uri: str) -> list[dict]:
    """One row per (molecule, k, seed, query trajectory) with every method's dipole nRMSE and the adaptation
    wall times."""
    rows = []
    models = {"meta": a.model, **({"multitask": a.multitask_model} if a.multitask_model else {})}
    for mol in a.molecules:
        for k in a.shots:
            for seed in a.seeds:
                runs = {}
                for tag, path in models.items():
                    runs[tag] = run(AdaptConfig(model=path, molecule=mol, support=[a.store], shots=k, query=a.query,
                                                out=f"{a.out}/{mol}/k{k}-s{seed}-{tag}", tracking_uri=uri,
                                                nest_under=parent,
                                                settings=AdaptSettings(steps=a.steps, seed=seed,
                                                                       max_steps=a.rollout_steps)))
                meta = runs["meta"]
                by_id = {tag: {q["id"]: q for q in s["per_query"]} for tag, s in runs.items()}
                for q in meta["per_query"]:
                    row = {"molecule": mol, "k": k, "seed": seed, "id": q["id"], "tier": q["tier"],
                           "adapt_s": meta["metrics"].get("adapted/adapt_s"),
                           "finetune_s": meta["metrics"].get("finetune/adapt_s")}
                    for col, (tag, key) in METHODS.items():
                        if tag in by_id and key in by_id[tag][q["id"]]:
                            row[col] = by_id[tag][q["id"]][key]
                    row["group"] = _group(row)
                    rows.append(row)
                print(json.dumps(rows[-1]), flush=True)
                (Path(a.out) / "few_shot.json").write_text(json.dumps(rows, indent=1))  # nothing lost if stopped
    return rows


def table(rows: list[dict]) -> tuple[str, dict]:
    """Markdown table: mean ± std over seeds (each seed the mean over its queries) per molecule, group, k and
    method; -> (text, {(molecule, group, k): {method: (mean, std)}})."""
    stats, lines = {}, []
    cols = [c for c in METHODS if any(c in r for r in rows)]
    lines.append("| molecule | fields | k | " + " | ".join(cols) + " | adapted / fine-tune | adapted / linear xc "
                 "| adapted / better ridge | MAML s |")
    lines.append("|---" * (len(cols) + 7) + "|")
    keys = sorted({(r["molecule"], r["group"], r["k"]) for r in rows}, key=lambda t: (t[0], GROUPS.index(t[1])
                                                                                      if t[1] in GROUPS else 9, t[2]))
    for mol, group, k in keys:
        sel = [r for r in rows if (r["molecule"], r["group"], r["k"]) == (mol, group, k)]
        seeds = sorted({r["seed"] for r in sel})
        st = {}
        for c in cols:
            per_seed = [np.mean([r[c] for r in sel if r["seed"] == s and c in r]) for s in seeds]
            per_seed = [v for v in per_seed if np.isfinite(v)]
            if per_seed:
                st[c] = (float(np.mean(per_seed)), float(np.std(per_seed)))
        stats[(mol, group, k)] = st

        def ratio(a, b, st=st):
            return f"{st[a][0] / st[b][0]:.2f}" if a in st and b in st and st[b][0] > 0 else ""

        best_ridge = min((c for c in ("ridge_xc", "ridge_xc_anchored") if c in st), key=lambda c: st[c][0],
                         default="ridge_xc")
        t = np.mean([r["adapt_s"] for r in sel if r.get("adapt_s") is not None] or [np.nan])
        lines.append(f"| {mol} | {group} (n={len(sel) // len(seeds)}) | {k} | " + " | ".join(
            f"{st[c][0]:.3g} ± {st[c][1]:.2g}" if c in st else "" for c in cols) +
            f" | {ratio('adapted', 'finetune')} | {ratio('adapted', 'linear_xc')} | {ratio('adapted', best_ridge)} "
            f"| {t:.1f} |")
    return "\n".join(lines), stats


def plot(stats: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mols = sorted({m for m, _, _ in stats})
    groups = [g for g in GROUPS if any(g == gg for _, gg, _ in stats)]
    fig, axes = plt.subplots(len(mols), len(groups), figsize=(4.2 * len(groups), 3 * len(mols)), squeeze=False)
    for ax, (mol, group) in zip(axes.flat, [(m, g) for m in mols for g in groups]):
        ks = sorted(k for m, g, k in stats if (m, g) == (mol, group))
        for c, col in enumerate(METHODS):
            pts = [(k, *stats[(mol, group, k)][col]) for k in ks if col in stats[(mol, group, k)]]
            if pts:
                k_, mean, std = map(np.asarray, zip(*pts))
                ax.errorbar(k_, mean, yerr=std, marker="o", ms=3, lw=1, capsize=2, label=col, color=f"C{c}",
                            ls="-" if col in ("adapted", "finetune", "mt_finetune", "ridge_xc", "ridge_xc_anchored") else ":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("k support trajectories")
        ax.set_title(f"{mol}: {group}", fontsize=9)
    for ax in axes[:, 0]:
        ax.set_ylabel("query dipole nRMSE\n(mean ± std over seeds)")
    axes[0, -1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="the meta-trained model (MAML-adapted, zero-shot, fine-tune)")
    p.add_argument("--multitask-model", default=None, help="a multi-task-trained model (zero-shot, fine-tune)")
    p.add_argument("--store", required=True, help="Zarr store with the new molecules' trajectories (V_xc recorded)")
    p.add_argument("--molecules", nargs="+", required=True)
    p.add_argument("--shots", type=int, nargs="+", default=[1, 3, 5, 10])
    p.add_argument("--query", type=int, default=3)
    p.add_argument("--steps", type=int, default=None, help="gradient steps (None: adapt's default)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rollout-steps", type=int, default=200)
    p.add_argument("--out", default="runs/few_shot")
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--table-only", action="store_true", help="re-make the table and plot from <out>/few_shot.json")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.table_only:
        text, stats = table(json.loads((out / "few_shot.json").read_text()))
        print(text)
        (out / "few_shot.md").write_text(text + "\n")
        plot(stats, out / "few_shot.png")
        return
    uri = tracking.resolve_uri(a.tracking_uri)
    parent = tracking.start_run(uri, "rtml", f"few-shot-{'-'.join(a.molecules)}", tags={"rtml.kind": "few_shot"})
    tracking.log_params(uri, parent, {k: str(v) for k, v in vars(a).items()})
    rows = collect(a, parent, uri)
    text, stats = table(rows)
    print(text)
    (out / "few_shot.json").write_text(json.dumps(rows, indent=1))
    (out / "few_shot.md").write_text(text + "\n")
    plot(stats, out / "few_shot.png")
    import mlflow

    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=parent, log_system_metrics=False):
        for f in ("few_shot.json", "few_shot.md", "few_shot.png"):
            mlflow.log_artifact(str(out / f))
    tracking.client(uri).set_terminated(parent, status="FINISHED")


if __name__ == "__main__":
    main()
