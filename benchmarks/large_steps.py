"""Larger steps than the data's: every propagator at Δt = k·dt against the reference at dt, on the reference's grid.

    python benchmarks/large_steps.py --store runs/corpus/regimes.zarr \
        --ids h2o-g001-kick0,h2o-g001-strong0,h2o-g001-resonant0 --strides 1,2,4,8,16 \
        [--model runs/stride8/model.pt:k8 ...] --out runs/large_steps

Competitors at each k (issue 26): the **exact propagator** (the reference engine itself — self-consistent 2nd-order
Magnus, exact xc — re-run at Δt = k·dt with a looser self-consistency tolerance for k > 1; a kick keeps its
impulse; a run whose self-consistency fails or whose drift checks trip is reported as diverged), the **linear-xc** and
**frozen-xc** propagators (the Kohn–Sham head with the network off) at Δt, **linear xc with the exact linear
response** at Δt > dt (``linear_xc_lr``, :mod:`rtml.models.linear_response`), for LDA molecules the adiabatic LDA
on the local term's grid (``grid_xc`` at dt, ``grid_xc_lr`` with the exact linear response at Δt > dt), and each
given model at its own stride. All are scored on the reference's frames that their steps land on (``Trajectory.strided``): dipole nRMSE,
kicked-peak shift (eV), and the cost per simulated a.u. of time (ms / a.u., batch 1, one thread). ``--converged
SUB`` scores everything against the reference re-run at dt/SUB instead (row ``reference``: the recorded one against
it — its own time-step error). Writes ``large_steps.json``, ``large_steps.md`` and ``large_steps.png`` (error and
cost against Δt) into ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from rtml.datasets.engine.propagator import IntegratorConfig
from rtml.datasets.engine.run import EngineConfig, propagate
from rtml.datasets.engine.system import SystemConfig
from rtml.datasets.errors import PropagationError
from rtml.datasets.store.zarr_store import TrajectoryStore
from rtml.models.inputs import spin_resolved
from rtml.platform.evaluate import RolloutEvalConfig, evaluate_trajectories, metrics_of
from rtml.platform.hybrid.inputs import case_from_trajectory
from rtml.platform.modelio import load_model

METRICS = ("dipole_nrmse", "max_peak_shift_ev", "ms_per_au")


def engine_run(traj, dt: float, n_steps: int, loose: bool = False):
    """The reference engine re-run on ``traj``'s molecule, functional and field at time step ``dt`` (a.u.) for
    ``n_steps`` frames; a kick keeps its impulse (amplitude·dt/2). ``loose``: the self-consistent midpoint with a
    1e-4 relative tolerance and up to 100 passes (at its default 1e-6 it stops converging from Δt ≈ 0.8 a.u.)."""
    inp = case_from_trajectory(traj)
    spec = inp["field"]
    if spec.kind == "delta":
        spec = dataclasses.replace(spec, amplitude=spec.amplitude * inp["dt"] / dt)
    icfg = IntegratorConfig(dt=dt, sc_rtol=1e-4, sc_atol=1e-10, sc_max_iter=100) if loose else IntegratorConfig(dt=dt)
    ecfg = EngineConfig(system=SystemConfig(basis=inp["basis"], xc=inp["xc"]), integrator=icfg, n_steps=n_steps,
                        record_xc=False)
    return propagate(inp["molecule"], spec, ecfg)


def converged_reference(traj, sub: int, tid: str, cache: Path):
    """The reference re-run at dt/sub and seen on the reference's own frames: its time-step error removed (the
    recorded reference is Magnus-2 at dt, whose error on a kick's fast oscillations is not small). Kept in the
    store ``cache`` (a re-run of the benchmark reads it back)."""
    with TrajectoryStore(cache, mode="a", precision="float64") as st:
        if tid in st.ids():
            return st.read(tid)
        fine = engine_run(traj, float(traj.dt) / sub, sub * (traj.n_steps - 1) + 1).strided(sub)
        fine.meta["field_spec"] = traj.meta["field_spec"]  # the field as specified (the kick's impulse, not its dt)
        st.append(fine, tid)
    return fine


def exact_at(traj, k: int, c: int, n: int, cfg: RolloutEvalConfig, source: str) -> dict:
    """The reference engine at Δt = k·dt on ``traj``'s molecule and field, scored like a predictor on the reference
    strided by k (context c, n steps); a kick keeps its impulse (amplitude·dt/2)."""
    strided = traj.strided(k)
    t0 = time.perf_counter()
    try:
        run = engine_run(traj, k * float(traj.dt), c + n + 1, loose=k > 1)
    except PropagationError as exc:
        return {"diverged": str(exc).split(":")[-1].strip()[:120]}
    ms = 1e3 * (time.perf_counter() - t0) / (c + n)
    states = spin_resolved(torch.from_numpy(run.density[c + 1:c + n + 1]))  # [n, 2, N, N]
    got = metrics_of(strided, source, c, n, {"exact": (states, run.meta["ms_per_step"])}, cfg)["exact"]
    got["ms_per_au_incl_scf"] = ms / (k * float(traj.dt))
    got["ms_per_au"] = run.meta["ms_per_step"] / (k * float(traj.dt))
    return got


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", required=True)
    p.add_argument("--ids", required=True, help="comma-separated trajectory ids (held-out)")
    p.add_argument("--strides", default="1,2,4,8,16")
    p.add_argument("--model", action="append", default=[], help="PATH[:LABEL] of a model.pt (at its own stride)")
    p.add_argument("--max-steps", type=int, default=None, help="reference frames rolled out (default: all)")
    p.add_argument("--out", default="runs/large_steps")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--converged", type=int, default=0, metavar="SUB",
                   help="score everything against the reference re-run at dt/SUB (its own time-step error removed; "
                        "row 'reference' = the recorded reference against it)")
    p.add_argument("--costs-only", action="store_true", help="only the timing table (rtml.platform.regimes."
                   "step_costs on the first id: every predictor at its own step, batch 1 and 8, 1 thread)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    store = TrajectoryStore(a.store)
    strides = [int(s) for s in a.strides.split(",")]
    models = []
    for spec in a.model:
        path, _, label = spec.partition(":")
        models.append((label or Path(path).parent.name, load_model(path).eval()))
    if a.costs_only:
        return costs(store.read(a.ids.split(",")[0]), models, out, [k for k in strides if k > 1])
    rows = []
    for tid in a.ids.split(","):
        traj = recorded = store.read(tid)
        if a.converged > 1:
            traj = converged_reference(recorded, a.converged, tid, out / f"converged_{a.converged}.zarr")
        for k in strides:
            steps = None if a.max_steps is None else max(1, a.max_steps // k)
            cfg = RolloutEvalConfig(max_steps=steps, stride=k, batch=1)
            base = evaluate_trajectories(None, [(traj, tid)], cfg)[0]
            c, n = 2, base["frames"]
            row = {"id": tid, "tier": base["tier"], "k": k, "dt": k * float(traj.dt), "frames": n,
                   "linear_xc": {m: base["linear_xc"].get(m) for m in METRICS},
                   **({"linear_xc_lr": {m: base["linear_xc_lr"].get(m) for m in METRICS}}
                      if "linear_xc_lr" in base else {}),
                   **{w: {m: base[w].get(m) for m in METRICS} for w in ("grid_xc", "grid_xc_lr") if w in base},
                   "frozen_xc": {m: base["frozen_xc"].get(m) for m in METRICS},
                   "exact": {m: v for m, v in exact_at(traj, k, c, n, cfg, tid).items()
                             if m in (*METRICS, "diverged", "ms_per_au_incl_scf")}}
            if a.converged > 1 and k == 1:
                rec = spin_resolved(torch.from_numpy(recorded.density[c + 1:c + n + 1]))
                got = metrics_of(traj, tid, c, n, {"reference": (rec, float("nan"))}, cfg)["reference"]
                row["reference"] = {m: got.get(m) for m in METRICS}
            for label, model in models:
                if getattr(model.cfg, "stride", 1) == k:
                    got = evaluate_trajectories(model, [(traj, tid)], cfg)[0]["model"]
                    row[f"model:{label}"] = {m: got.get(m) for m in METRICS}
            rows.append(row)
            print(json.dumps(row), flush=True)
    (out / "large_steps.json").write_text(json.dumps({"store": a.store, "converged": a.converged, "rows": rows},
                                                     indent=2))
    (out / "large_steps.md").write_text(format_rows(rows))
    plot(rows, out / "large_steps.png", f"the engine at dt/{a.converged}" if a.converged > 1 else "reference (dt 0.2)")
    print(format_rows(rows))
    return 0


def costs(traj, models: list, out: Path, strides=(8,)) -> int:
    """ms per step and per simulated a.u. of linear xc, frozen xc (at the data's dt), linear xc with the exact
    linear response at each of ``strides``, and each model (at its own stride), batch 1 and 8, next to the
    reference engine's recorded ms/step; per-geometry set-up apart; written to ``costs.json``."""
    from rtml.models.baselines import FrozenXC, FrozenXCConfig, LinearXC
    from rtml.platform.regimes import step_costs

    lr = {f"linear_xc_lr:k{k}": LinearXC(FrozenXCConfig(linear_response="exact", stride=k)) for k in strides}
    got = step_costs({"linear_xc": LinearXC(), "frozen_xc": FrozenXC(), **lr,
                      **{f"model:{k}": m for k, m in models}}, traj, steps=100, batch=8)
    (out / "costs.json").write_text(json.dumps(got, indent=2))
    ref = got["reference_engine/ms_per_au"]
    for key, v in got.items():
        if key.endswith("/ms_per_au"):
            setup = got.get(key.replace("/ms_per_au", "/setup_ms"))
            print(f"{key:32s} {v:9.3f} ms per a.u.  (reference engine / this: {ref / v:7.1f}x)"
                  + ("" if setup is None else f"  set-up {setup:7.1f} ms"))
    return 0


def format_rows(rows: list[dict]) -> str:
    whos = [w for w in ("reference", "exact", "linear_xc", "linear_xc_lr", "grid_xc", "grid_xc_lr", "frozen_xc")
            if any(w in r for r in rows)]
    whos += sorted({w for r in rows for w in r if w.startswith("model:")})
    head = "| trajectory | k | Δt (a.u.) | " + " | ".join(f"{w} nRMSE / peak eV / ms per a.u." for w in whos) + " |"
    lines = [head, "|" + "---|" * (3 + len(whos))]
    for r in rows:
        cells = []
        for w in whos:
            m = r.get(w)
            if m is None:
                cells.append("—")
            elif "diverged" in m:
                cells.append("diverged")
            else:
                peak = "" if m.get("max_peak_shift_ev") is None else f" / {m['max_peak_shift_ev']:.3f}"
                cells.append(f"{m['dipole_nrmse']:.4f}{peak} / {m['ms_per_au']:.1f}")
        lines.append(f"| {r['id']} | {r['k']} | {r['dt']:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, against: str = "reference (dt 0.2)") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids = sorted({r["id"] for r in rows})
    fig, axes = plt.subplots(2, len(ids), figsize=(4.2 * len(ids), 6.5), squeeze=False)
    for j, tid in enumerate(ids):
        mine = [r for r in rows if r["id"] == tid]
        for w in sorted({w for r in mine for w in r if w in ("exact", "linear_xc", "linear_xc_lr", "grid_xc", "grid_xc_lr",
                                                             "frozen_xc") or w.startswith("model:")}):
            pts = [(r["dt"], r[w]) for r in mine if w in r and "diverged" not in r[w]]
            if pts:
                axes[0, j].loglog([d for d, _ in pts], [m["dipole_nrmse"] for _, m in pts], "o-", label=w)
                axes[1, j].loglog([d for d, _ in pts], [m["ms_per_au"] for _, m in pts], "o-", label=w)
        axes[0, j].set_title(tid, fontsize=9)
        axes[0, j].set_ylabel(f"dipole nRMSE vs {against}")
        axes[1, j].set_ylabel("ms per simulated a.u.")
        axes[1, j].set_xlabel("step Δt (a.u.)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
