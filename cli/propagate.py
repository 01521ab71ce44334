"""``rtml propagate``: hybrid RT-TDDFT from the SCF ground state — a surrogate ensemble, re-anchored by the engine.

Writes the trajectory into a Zarr store (the data engine's format: ``rtml inspect --verify`` and ``rtml evaluate``
read it), dipole/spectrum plots next to it and one MLflow run, and prints every re-anchoring trigger, the reference
fraction and the wall-time split. The thresholds are :class:`rtml.platform.hybrid.config.HybridConfig`'s (flags
derive their defaults from it); the Python entry point is :func:`rtml.platform.hybrid.api.propagate`.
"""

from __future__ import annotations

from pathlib import Path

from rtml.cli.flags import add_flags, build
from rtml.datasets.engine.propagator import IntegratorConfig
from rtml.datasets.engine.system import SystemConfig
from rtml.datasets.errors import DataError
from rtml.datasets.molecules import get_molecule
from rtml.datasets.store.zarr_store import TrajectoryStore
from rtml.platform import tracking
from rtml.platform.hybrid.api import log_hybrid_run, plot_hybrid, propagate
from rtml.platform.hybrid.config import HybridConfig
from rtml.platform.hybrid.field_spec import parse_field
from rtml.platform.hybrid.inputs import case_from_trajectory, molecule_from


def add_parser(sub) -> None:
    p = sub.add_parser("propagate", help="hybrid RT-TDDFT: surrogate ensemble + reference re-anchoring")
    p.add_argument("--model", nargs="+", required=True, help="model.pt files, run directories or MLflow URIs")
    p.add_argument("--molecule", default=None, help="catalog name or .xyz path")
    p.add_argument("--field", default=None, help="kick:AMPLITUDE[:x|y|z] or a JSON FieldSpec")
    p.add_argument("--steps", type=int, default=None, help="recorded frames including t = 0")
    p.add_argument("--from", dest="source", default=None, metavar="STORE:ID",
                   help="take geometry, field, basis, xc, dt and steps from a stored trajectory (flags override)")
    p.add_argument("--basis", default=None, help=f"default {SystemConfig.basis}")
    p.add_argument("--xc", default=None, help=f"default {SystemConfig.xc}")
    p.add_argument("--dt", type=float, default=None, help=f"a.u., default {IntegratorConfig.dt}")
    p.add_argument("--out", required=True, help="Zarr store to append the trajectory to")
    p.add_argument("--id", default=None, help="trajectory id in the store (default: <molecule>-hybrid)")
    p.add_argument("--plots", default=None, help="folder for dipole.png/spectrum.png (default: <out>.plots/<id>)")
    p.add_argument("--tracking-uri", default=None, help="MLflow (default $MLFLOW_TRACKING_URI or ./mlflow.db)")
    p.add_argument("--experiment", default="rtml-propagate")
    p.add_argument("--no-tracking", action="store_true", help="do not log an MLflow run")
    add_flags(p, HybridConfig)
    p.set_defaults(func=run_args)


def run_args(a) -> int:
    case = {"basis": SystemConfig.basis, "xc": SystemConfig.xc, "dt": IntegratorConfig.dt}
    if a.source:
        store, _, tid = a.source.rpartition(":")
        if not store or not tid:
            raise DataError("<command line>", "--from", "STORE:ID (a Zarr store and a trajectory id in it)",
                            repr(a.source))
        case.update(case_from_trajectory(TrajectoryStore(store).read(tid)))
    given = {"molecule": a.molecule and get_molecule(a.molecule), "field": a.field and parse_field(a.field),
             "n_steps": a.steps, "basis": a.basis, "xc": a.xc, "dt": a.dt}
    case.update({k: v for k, v in given.items() if v is not None})
    for key, flag in (("molecule", "--molecule"), ("field", "--field"), ("n_steps", "--steps")):
        if key not in case:
            raise DataError("<command line>", flag, "a value (or --from STORE:ID)", "none")
    hcfg = build(HybridConfig, a)
    return run(a.model, case["molecule"], case["field"], case["n_steps"], hcfg, a.out, traj_id=a.id,
               basis=case["basis"], xc=case["xc"], dt=case["dt"], plots=a.plots,
               tracking_uri=None if a.no_tracking else (a.tracking_uri or ""), experiment=a.experiment)


def run(model_specs: list[str], molecule, field, n_steps: int, cfg: HybridConfig, out: str, *,
        traj_id: str | None = None, basis: str | None = None, xc: str | None = None, dt: float | None = None,
        plots: str | None = None, tracking_uri: str | None = None, experiment: str = "rtml-propagate") -> int:
    """``molecule``: anything :func:`rtml.platform.hybrid.inputs.molecule_from` takes; ``tracking_uri``: None = no
    MLflow run; '' = the default store; else that URI."""

    mol = molecule_from(molecule)  # unknown names raise DataError before any model is loaded
    uri = None
    if tracking_uri is not None:
        uri = tracking.resolve_uri(tracking_uri or None)
        tracking.check_reachable(uri)
    res = propagate(model_specs, mol, field, n_steps, basis=basis, xc=xc, dt=dt, hybrid=cfg, progress=True)
    tid = traj_id or f"{mol.name}-hybrid"
    with TrajectoryStore(out, mode="a") as store:
        store.append(res.trajectory, tid)
    pngs = plot_hybrid(res, plots or Path(f"{str(out).rstrip('/')}.plots") / tid)
    for t in res.triggers:
        what = (f"after {t['value']} surrogate steps" if t["reason"] in ("reference_every", "max_model_steps")
                else f"{t['value']:.3g} > {t['threshold']:.3g}")
        print(f"  step {t['step']:>6}: {t['reason']} ({what})")
    w = res.wall
    print(f"{tid}: {len(res.triggers)} anchors, reference fraction {res.reference_fraction:.3f}, wall "
          f"{w['total']:.1f} s (setup {w['setup']:.1f}, model {w['model']:.1f}, reference {w['reference']:.1f}) "
          f"-> {out}; plots {pngs[0].parent}")
    if uri is not None:
        params = {"molecule": mol.name, "field": res.trajectory.meta["field_spec"], "steps": n_steps,
                  "models": " ".join(map(str, model_specs)), "store": str(out), "id": tid,
                  **{f"system.{k}": v for k, v in res.trajectory.meta["system"].items()},
                  **{f"hybrid.{k}": v for k, v in res.trajectory.meta["hybrid"].items()}}
        run_id = log_hybrid_run(res, uri, experiment, f"propagate-{tid}", pngs, params)
        print(f"MLflow run {run_id} ({uri})")
    return 0
