"""``rtml quickstart``: the main job on embedded defaults.

Until the training platform lands this is the data pipeline end to end: generate a small multi-molecule dataset
with the reference engine on local Ray, verify the store, print its summary, and plot an absorption spectrum from a
kicked run next to PySCF's linear-response lines.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from rtml.datasets.generate import GenerateConfig, generate
from rtml.datasets.store.zarr_store import TrajectoryStore
from rtml.platform.commands.inspect import format_summary
from rtml.platform.commands.validate_reference import _plot_spectrum


@dataclass(kw_only=True)
class QuickstartConfig:
    out: str = "runs/quickstart"
    molecules: tuple[str, ...] = ("h2", "lih", "h2o")
    n_geometries: int = 2
    steps: int = 300
    spectrum_molecule: str = "h2"
    spectrum_t_total: float = 300.0
    num_cpus: int | None = None


def add_parser(sub) -> None:
    p = sub.add_parser("quickstart", help="the main job on embedded defaults (data pipeline, local Ray)")
    p.add_argument("--out", default="runs/quickstart")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--n-geometries", type=int, default=2)
    p.set_defaults(func=lambda a: run(QuickstartConfig(out=a.out, steps=a.steps, n_geometries=a.n_geometries)))


def run(cfg: QuickstartConfig) -> int:
    from rtml.datasets.validation import peak_check

    t0 = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    store_path = str(out / "trajectories.zarr")
    print(f"[1/3] generating {len(cfg.molecules)} molecules x {cfg.n_geometries} geometries x (kick, pulse), "
          f"{cfg.steps} steps each -> {store_path}")
    rep = generate(GenerateConfig(out=store_path, molecules=list(cfg.molecules), fields=["kick", "pulse"],
                                  n_geometries=cfg.n_geometries, steps=cfg.steps, num_cpus=cfg.num_cpus))
    print("[2/3] verifying the store (checksums, Hermiticity, trace)")
    store = TrajectoryStore(store_path)
    problems = store.verify()
    print(format_summary(store.summary()))
    print(f"verify: {len(problems)} problems")
    print(f"[3/3] absorption spectrum of {cfg.spectrum_molecule} vs linear-response TDDFT")
    res = peak_check(cfg.spectrum_molecule, t_total=cfg.spectrum_t_total)
    plot = out / f"spectrum_{cfg.spectrum_molecule}.png"
    _plot_spectrum(res, plot)
    res.pop("trajectory")
    for r in res["peaks"]:
        print(f"  {r['axis']}: LR {r['lr_ev']:.4f} eV, real-time {r['rt_ev']:.4f} eV, |diff| {r['error_ev']:.4f} eV")
    summary = {"store": store_path, "generation": rep, "verify_problems": problems, "spectrum_plot": str(plot),
               "peak_max_error_ev": res["max_error_ev"], "wall_seconds": time.perf_counter() - t0}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"done in {summary['wall_seconds']:.0f} s: store {store_path}, plot {plot}, summary {out / 'summary.json'}")
    return 0 if not problems and not rep["failed"] else 1
