"""Plots of an adaptation run: query dipoles of the three models and the physics baselines (frozen xc, linear xc)
against the reference, and per-trajectory dipole nRMSE bars with linear xc beside the models."""

from __future__ import annotations

from pathlib import Path

import numpy as np

LABELS = {"zero_shot": "zero-shot", "finetune": "fine-tune (Adam)", "adapted": "adapted (MAML)",
          "ridge_xc": "ridge xc map (support V_xc)", "ridge_xc_anchored": "ridge correction to K₀"}


def plot_comparison(results: dict, out_dir: str | Path, max_panels: int = 3) -> list[Path]:
    """``results``: {method: [rollout results per query trajectory]} -> [dipole.png, nrmse.png]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    first = results["zero_shot"][:max_panels]
    fig, axes = plt.subplots(len(first), 1, figsize=(7, 2.3 * len(first)), squeeze=False)
    for j, (ax, r0) in enumerate(zip(axes[:, 0], first)):
        i = int(np.argmax(np.ptp(r0["mu_ref"], axis=0)))
        ax.plot(r0["time"], r0["mu_ref"][:, i], "k-", lw=1.4, label="reference (PySCF RT-TDDFT)")
        for who, style, label in (("frozen_xc", "C7:", "frozen xc"), ("linear_xc", "C4-.", "linear xc")):
            if who in r0["mu"]:
                ax.plot(r0["time"], r0["mu"][who][:, i], style, lw=1.0,
                        label=f"{label}: nRMSE {r0[who]['dipole_nrmse']:.3g}")
        for c, (name, label) in enumerate(LABELS.items()):
            if name not in results:
                continue
            r = results[name][j]
            ax.plot(r["time"], r["mu"]["model"][:, i], f"C{c}--", lw=1.1,
                    label=f"{label}: nRMSE {r['model']['dipole_nrmse']:.3g}")
        ax.set_title(f"{r0['id']}: μ_{'xyz'[i]}", fontsize=8)
        ax.set_ylabel("dipole (a.u.)")
        ax.legend(fontsize=6)
    axes[-1, 0].set_xlabel("time (a.u.)")
    fig.tight_layout()
    paths = [out_dir / "adapt_dipole.png"]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)

    ids = [r["id"] for r in results["zero_shot"]]
    x = np.arange(len(ids))
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(ids)), 3))
    bars = [(label, f"C{c}", [r["model"]["dipole_nrmse"] for r in results[name]])
            for c, (name, label) in enumerate(LABELS.items()) if name in results]
    lin = [r.get("linear_xc", {}).get("dipole_nrmse", np.nan) for r in results["zero_shot"]]
    if not np.all(np.isnan(lin)):  # the physics baseline the learned term has to beat
        bars.append(("linear xc (no learning)", "C4", lin))
    width = 0.8 / len(bars)
    for c, (label, color, vals) in enumerate(bars):
        ax.bar(x + (c - (len(bars) - 1) / 2) * width, vals, width, label=label, color=color)
    ax.set_yscale("log")
    ax.set_xticks(x, ids, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("dipole nRMSE (query)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(out_dir / "adapt_nrmse.png")
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)
    return paths
