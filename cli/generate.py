"""``rtml generate``: RT-TDDFT trajectories with the reference engine into a Zarr store (one Ray task each).

The flags are :class:`rtml.datasets.generate.GenerateConfig`'s fields (names, defaults and help come from it)."""

from __future__ import annotations

import json

from rtml.cli.parsing import parse
from rtml.datasets.generate import GenerateConfig, generate
from rtml.datasets.molecules import CATALOG

HELP = "generate trajectories with the PySCF reference engine (Ray, resumable)"


def main(argv: list[str]) -> int:
    return run(parse(GenerateConfig, argv, prog="rtml generate", description=f"{__doc__.splitlines()[0]} Catalog molecules: {', '.join(sorted(CATALOG))}.", flat=True))


def run(cfg: GenerateConfig) -> int:
    report = generate(cfg)
    print(json.dumps(report, indent=2))
    if report.get("unwritten"):
        u = report["unwritten"]
        print(f"{len(u['ids'])} finished trajectories could not go into {cfg.out}; they are kept in {u['dir']} "
              f"(append them later: {u['append_later']})")
    return 1 if report["failed"] or report.get("unwritten") else 0
