"""``rtml propagate``: hybrid RT-TDDFT from the SCF ground state — a surrogate ensemble, re-anchored by the engine.

Writes the trajectory into a Zarr store (the data engine's format: ``rtml inspect --verify`` and ``rtml evaluate``
read it) and prints every re-anchoring trigger, the reference fraction and the wall-time split. The thresholds
are :class:`rtml.platform.hybrid.config.HybridConfig`'s (flags derive their defaults from it).
"""

from __future__ import annotations

import json
from dataclasses import fields

from rtml.datasets.engine.propagator import IntegratorConfig
from rtml.datasets.engine.run import EngineConfig
from rtml.datasets.engine.system import SystemConfig
from rtml.datasets.errors import DataError
from rtml.datasets.fields import FieldSpec, kick
from rtml.datasets.molecules import get_molecule
from rtml.platform.hybrid.config import HybridConfig

AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}


def parse_field(spec: str) -> FieldSpec:
    """``kick:AMPLITUDE[:x|y|z]`` (delta kick, a.u.) or a JSON FieldSpec (``{"kind": "gaussian", ...}``)."""
    if spec.startswith("{"):
        try:
            return FieldSpec.from_dict(json.loads(spec))
        except (ValueError, TypeError) as exc:
            raise DataError("<command line>", "--field", "a JSON FieldSpec (kind, amplitude, omega, sigma, t0, "
                            "phase, polarization)", f"{spec!r} ({exc})") from None
    parts = spec.split(":")
    if parts[0] != "kick" or len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in AXES):
        raise DataError("<command line>", "--field", "kick:AMPLITUDE[:x|y|z] or a JSON FieldSpec", repr(spec))
    try:
        amp = float(parts[1])
    except ValueError:
        raise DataError("<command line>", "--field", "a number for the kick amplitude (a.u.)", repr(parts[1])) from None
    return kick(amp, AXES[parts[2] if len(parts) == 3 else "z"])


def add_parser(sub) -> None:
    p = sub.add_parser("propagate", help="hybrid RT-TDDFT: surrogate ensemble + reference re-anchoring")
    p.add_argument("--model", nargs="+", required=True, help="model.pt files, run directories or MLflow URIs")
    p.add_argument("--molecule", required=True, help="catalog name or .xyz path")
    p.add_argument("--field", required=True, help="kick:AMPLITUDE[:x|y|z] or a JSON FieldSpec")
    p.add_argument("--steps", type=int, required=True, help="recorded frames including t = 0")
    p.add_argument("--basis", default=SystemConfig.basis)
    p.add_argument("--xc", default=SystemConfig.xc)
    p.add_argument("--dt", type=float, default=IntegratorConfig.dt)
    p.add_argument("--out", required=True, help="Zarr store to append the trajectory to")
    p.add_argument("--id", default=None, help="trajectory id in the store (default: <molecule>-hybrid)")
    for f in fields(HybridConfig):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=float if isinstance(f.default, float) else int,
                       default=f.default, help=f"HybridConfig.{f.name} (default {f.default})")
    p.set_defaults(func=run_args)


def run_args(a) -> int:
    hcfg = HybridConfig(**{f.name: getattr(a, f.name) for f in fields(HybridConfig)})
    engine = EngineConfig(system=SystemConfig(basis=a.basis, xc=a.xc), integrator=IntegratorConfig(dt=a.dt),
                          n_steps=a.steps)
    return run(a.model, a.molecule, parse_field(a.field), engine, hcfg, a.out, a.id)


def run(model_specs: list[str], molecule: str, field: FieldSpec, engine: EngineConfig, cfg: HybridConfig,
        out: str, traj_id: str | None = None) -> int:
    from rtml.datasets.store.zarr_store import TrajectoryStore
    from rtml.platform.hybrid.propagator import propagate_hybrid
    from rtml.platform.modelio import load_model

    mol = get_molecule(molecule)  # unknown names raise DataError
    models = []
    for spec in model_specs:
        m = load_model(spec)
        m.rtml_meta = {**getattr(m, "rtml_meta", {}), "path": str(spec)}
        models.append(m)
    res = propagate_hybrid(models, mol, field, engine, cfg, progress=True)
    tid = traj_id or f"{mol.name}-hybrid"
    TrajectoryStore(out, mode="a").append(res.trajectory, tid)
    for t in res.triggers:
        what = (f"after {t['value']} surrogate steps" if t["reason"] in ("reference_every", "max_model_steps")
                else f"{t['value']:.3g} > {t['threshold']:.3g}")
        print(f"  step {t['step']:>6}: {t['reason']} ({what})")
    w = res.wall
    print(f"{tid}: {len(res.triggers)} anchors, reference fraction {res.reference_fraction:.3f}, wall "
          f"{w['total']:.1f} s (setup {w['setup']:.1f}, model {w['model']:.1f}, reference {w['reference']:.1f}) "
          f"-> {out}")
    return 0
