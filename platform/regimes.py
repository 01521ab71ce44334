"""Held-out rollouts per field regime: is the learned term worth running where linear response fails?

Trajectories are grouped by molecule, functional and field tier (:func:`rtml.datasets.fields.field_tier`: weak =
kicks and pulses ≤ 0.0075 a.u., moderate ≤ 0.035, strong above, resonant pulses included) and every predictor's
dipole nRMSE and excited-population nRMSE (:mod:`rtml.platform.evaluate`) is averaged per group, with the model's
ratio to linear xc — the physics it is anchored on, which needs no training. :func:`step_costs` times each predictor
per trajectory-step at batch 1 and batched, next to the reference engine's own cost (recorded when the trajectory
was generated). ``benchmarks/regimes.py`` writes the JSON, the Markdown table and the plot; the quickstart prints
the table for its own model.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from rtml.datasets.fields import TIERS
from rtml.models.inputs import MoleculeBatch, spin_resolved
from rtml.models.rollout import rollout

REGIME_METRICS = ("dipole_nrmse", "population_nrmse")
NAMES = {"model": "rtml", "linear_xc": "linear xc", "linear_xc_lr": "linear xc, exact LR", "frozen_xc": "frozen xc",
         "grid_xc": "LDA on the grid", "grid_xc_lr": "LDA on the grid, exact LR", "trivial": "trivial"}


def _group(r: dict) -> str:
    xc = r.get("functional", "?")
    return f"{r['molecule']} ({xc})"


def summarize_regimes(results: list[dict]) -> dict:
    """Per-trajectory results (each with ``molecule``, ``functional``, ``tier`` and per-predictor metrics) ->
    ``{"rows": [{"group", "tier", "n", "<who>/<metric>": mean, "ratio": model/linear-xc dipole nRMSE}], ...}``
    with one row per (molecule, functional, tier) and an ``all`` row per tier (the mean over its rows' means)."""
    rows = []
    groups = sorted({_group(r) for r in results})
    for g in groups:
        for tier in (*TIERS, "unknown"):
            sel = [r for r in results if _group(r) == g and r.get("tier") == tier]
            if sel:
                rows.append(_row(g, tier, sel))
    for tier in TIERS:
        sel = [r for r in rows if r["tier"] == tier]
        if sel:
            row = {"group": "all", "tier": tier, "n": sum(r["n"] for r in sel)}
            for key in {k for r in sel for k in r if "/" in k}:
                vals = [r[key] for r in sel if key in r]
                row[key] = float(np.mean(vals))
            row["ratio"] = _ratio(row)
            row["worst_ratio"] = max((r["ratio"] for r in sel if r.get("ratio") is not None), default=None)
            rows.append(row)
    return {"rows": rows}


def _row(group: str, tier: str, sel: list[dict]) -> dict:
    row = {"group": group, "tier": tier, "n": len(sel), "ids": [r["id"] for r in sel]}
    for who in NAMES:
        for m in REGIME_METRICS:
            vals = [r[who][m] for r in sel if who in r and m in r[who]]
            if vals:
                row[f"{who}/{m}"] = float(np.mean(vals))
    row["ratio"] = _ratio(row)
    return row


def _ratio(row: dict) -> float | None:
    m, lin = row.get("model/dipole_nrmse"), row.get("linear_xc/dipole_nrmse")
    return None if m is None or not lin else m / lin


def format_regimes(summary: dict, metric: str = "dipole_nrmse") -> str:
    """Markdown table: one row per (molecule, functional, tier), predictors side by side, rtml / linear xc."""
    rows = summary["rows"]
    cols = [w for w in NAMES if any(f"{w}/{metric}" in r for r in rows)]
    head = ["molecule (xc)", "tier", "n", *(NAMES[w] for w in cols)]
    if "model" in cols and "linear_xc" in cols:
        head.append("rtml / linear xc")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["group"], r["tier"], str(r["n"]), *(_fmt(r.get(f"{w}/{metric}")) for w in cols)]
        if len(head) > len(cols) + 3:
            cells.append(_fmt(r.get("ratio")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(v) -> str:
    return "" if v is None else f"{v:.3g}"


def plot_regimes(summary: dict, path: str | Path) -> Path:
    """Bars of rtml / linear-xc dipole nRMSE per molecule and tier (log scale) with the targets (0.5: moderate and
    strong fields; 1.5: weak fields)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in summary["rows"] if r.get("ratio") is not None and r["group"] != "all"]
    groups = sorted({r["group"] for r in rows})
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(groups)), 3.4))
    x = np.arange(len(groups))
    for i, tier in enumerate(TIERS):
        vals = [next((r["ratio"] for r in rows if r["group"] == g and r["tier"] == tier), np.nan) for g in groups]
        ax.bar(x + (i - 1) * 0.27, vals, 0.27, label=tier, color=f"C{i}")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.axhline(0.5, color="C3", lw=0.8, ls="--", label="target moderate/strong (0.5)")
    ax.axhline(1.5, color="C0", lw=0.8, ls=":", label="target weak (1.5)")
    ax.set_yscale("log")
    ax.set_xticks(x, groups, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("dipole nRMSE: rtml / linear xc")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@torch.no_grad()
def step_costs(predictors: dict, traj, steps: int = 100, batch: int = 8, context: int = 2,
               repeats: int = 2) -> dict:
    """ms per trajectory-step of each predictor (``{name: module}``; the baselines are modules too) rolling out
    ``traj``'s first ``steps`` frames at batch 1 and at ``batch`` (the same geometry under ``batch`` copies of the
    field: an ensemble of pulses), best of ``repeats``; plus the reference engine's ms/step as recorded (its
    generation run: Magnus-2 with the self-consistent midpoint, 1 thread) and the time step ``dt`` (a.u.: ms per
    simulated a.u. = ms per step / dt). A predictor of ``stride`` k steps k·dt (on ``traj.strided(k)``, ``steps`` of
    its own): ``<name>@<b>/ms_per_au`` is every predictor's cost per simulated a.u. at its own step. The per-geometry
    set-up (``prepare``: encoders, Löwdin transforms) is timed apart (``<name>@<b>/setup_ms``, per batch) and left
    out of the per-step cost, as the reference engine's SCF is; the exact linear response's matrices
    (:mod:`rtml.models.linear_response`) are built on first use and cached per process, so the best of ``repeats``
    leaves their one-time cost out too (time :meth:`LinearResponse.matrices` for it)."""

    out = {"dt": float(traj.dt), "reference_engine": float(traj.meta.get("ms_per_step", float("nan")))}
    out["reference_engine/ms_per_au"] = out["reference_engine"] / out["dt"]
    for name, m in predictors.items():
        if m is None:
            continue
        if hasattr(m, "eval"):
            m.eval()
        tr = traj.strided(getattr(getattr(m, "cfg", None), "stride", 1))
        n = min(steps, tr.n_steps - 1 - context)
        for b in (1, batch):
            mol = MoleculeBatch.from_trajectories([tr] * b, dtype=torch.float32, kohn_sham=True)
            rho = spin_resolved(torch.from_numpy(tr.density[:context + 1]), mol.nbf)
            rho = rho[None].expand(b, *rho.shape)  # [b, c+1, 2, N, N]
            field = torch.from_numpy(tr.field[context:context + n + 1]).double()[None].expand(b, -1, -1)
            mid = torch.from_numpy(tr.step_field()[context:context + n]).double()[None].expand(b, -1, -1)
            best, setup = float("inf"), float("inf")
            with torch.no_grad():
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    rollout(m, mol, rho[:, -1], field, n, float(tr.dt), store_every=1, context=rho[:, :-1],
                            field_mid=mid)
                    t1 = time.perf_counter()
                    m.prepare(mol, rho[:, 0])
                    t2 = time.perf_counter()
                    best, setup = min(best, t1 - t0), min(setup, t2 - t1)
            per_step = 1e3 * max(best - setup, 0.0) / (n * b)
            out[f"{name}@{b}"] = per_step
            out[f"{name}@{b}/ms_per_au"] = per_step / float(tr.dt)
            out[f"{name}@{b}/setup_ms"] = 1e3 * setup
    return out


def format_compare(summaries: dict, metric: str = "dipole_nrmse") -> str:
    """Several models (``{label: summary}``, same held-out set) side by side with the baselines of the first:
    one row per (molecule, functional, tier); each model's value with its ratio to linear xc in parentheses."""
    labels = list(summaries)
    first = summaries[labels[0]]["rows"]
    base = [w for w in ("linear_xc", "grid_xc", "frozen_xc", "trivial") if any(f"{w}/{metric}" in r for r in first)]
    head = ["molecule (xc)", "tier", "n", *(NAMES[w] for w in base), *labels]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in first:
        cells = [r["group"], r["tier"], str(r["n"]), *(_fmt(r.get(f"{w}/{metric}")) for w in base)]
        for lab in labels:
            o = next((x for x in summaries[lab]["rows"] if x["group"] == r["group"] and x["tier"] == r["tier"]), {})
            v, lin = o.get(f"model/{metric}"), r.get(f"linear_xc/{metric}")
            cells.append(_fmt(v) + (f" ({v / lin:.2f}×)" if v is not None and lin else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_learning_curve(summaries: dict, sizes: dict, path: str | Path) -> Path:
    """Mean held-out dipole nRMSE per tier (the ``all`` rows) against training-set size: ``summaries`` {label:
    summary}, ``sizes`` {label: number of training trajectories}; linear xc (no training) as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted(sizes, key=sizes.get)
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for i, tier in enumerate(TIERS):
        rows = [next((r for r in summaries[lab]["rows"] if r["group"] == "all" and r["tier"] == tier), None)
                for lab in labels]
        if not any(rows):
            continue
        x = [sizes[lab] for lab, r in zip(labels, rows) if r]
        ax.plot(x, [r["model/dipole_nrmse"] for r in rows if r], f"C{i}o-", label=f"rtml, {tier}")
        lin = next((r.get("linear_xc/dipole_nrmse") for r in rows if r), None)
        if lin is not None:
            ax.axhline(lin, color=f"C{i}", ls="--", lw=0.8, label=f"linear xc, {tier}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training trajectories")
    ax.set_ylabel("held-out dipole nRMSE (mean)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
