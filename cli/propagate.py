"""``rtml propagate``: hybrid RT-TDDFT from the SCF ground state — a surrogate ensemble, re-anchored by the engine.

Writes the trajectory into a Zarr store (the data engine's format: ``rtml inspect --verify`` and ``rtml evaluate``
read it), dipole/spectrum plots next to it and one MLflow run, and prints every re-anchoring trigger, the reference
fraction and the wall-time split. The thresholds are :class:`rtml.platform.hybrid.config.HybridConfig`'s (flags
derive their defaults from it); the Python entry point is :func:`rtml.platform.hybrid.api.propagate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Annotated

import tyro

from rtml.cli.parsing import parse
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


@dataclass(kw_only=True)
class PropagateConfig:
    """What ``rtml propagate`` runs: the case comes from the flags or from a stored trajectory (``source``), the
    thresholds from :class:`HybridConfig`."""
    model: list[str]  # model.pt files, run directories or MLflow URIs (several: an ensemble)
    out: str  # Zarr store to append the trajectory to
    molecule: str | None = None  # catalog name or .xyz path
    field: str | None = None  # kick:AMPLITUDE[:x|y|z] or a JSON FieldSpec
    steps: int | None = None  # recorded frames including t = 0
    source: Annotated[str | None, tyro.conf.arg(name="from")] = None  # STORE:ID — take geometry, field, basis, xc, dt and steps from a stored trajectory (flags override)
    basis: str | None = None  # basis set (None: the stored trajectory's, else the engine's default)
    xc: str | None = None  # functional (None: the stored trajectory's, else the engine's default)
    dt: float | None = None  # time step in a.u. (None: the stored trajectory's, else the engine's default)
    id: str | None = None  # trajectory id in the store (None: <molecule>-hybrid)
    plots: str | None = None  # folder for dipole.png/spectrum.png (None: <out>.plots/<id>)
    tracking: bool = True  # log an MLflow run
    tracking_uri: str | None = None  # MLflow tracking URI (None: $MLFLOW_TRACKING_URI, else ./mlflow.db)
    experiment: str = "rtml-propagate"  # MLflow experiment
    hybrid: HybridConfig = dataclass_field(default_factory=HybridConfig)


HELP = "hybrid RT-TDDFT: surrogate ensemble + reference re-anchoring"


def main(argv: list[str]) -> int:
    return run_config(parse(PropagateConfig, argv, prog="rtml propagate", description=__doc__.split("\n\n")[0],
                            flat=True))


def run_config(cfg: PropagateConfig) -> int:
    """Resolve the case (``source`` first, then the flags; the engine's defaults for what neither gives) and run."""
    case = {"basis": SystemConfig.basis, "xc": SystemConfig.xc, "dt": IntegratorConfig.dt}
    if cfg.source:
        store, _, tid = cfg.source.rpartition(":")
        if not store or not tid:
            raise DataError("<command line>", "--from", "STORE:ID (a Zarr store and a trajectory id in it)",
                            repr(cfg.source))
        case.update(case_from_trajectory(TrajectoryStore(store).read(tid)))
    given = {"molecule": cfg.molecule and get_molecule(cfg.molecule), "field": cfg.field and parse_field(cfg.field),
             "n_steps": cfg.steps, "basis": cfg.basis, "xc": cfg.xc, "dt": cfg.dt}
    case.update({k: v for k, v in given.items() if v is not None})
    for key, flag in (("molecule", "--molecule"), ("field", "--field"), ("n_steps", "--steps")):
        if key not in case:
            raise DataError("<command line>", flag, "a value (or --from STORE:ID)", "none")
    return run(cfg.model, case["molecule"], case["field"], case["n_steps"], cfg.hybrid, cfg.out, traj_id=cfg.id,
               basis=case["basis"], xc=case["xc"], dt=case["dt"], plots=cfg.plots,
               tracking_uri=(cfg.tracking_uri or "") if cfg.tracking else None, experiment=cfg.experiment)


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
