"""``rtml inspect STORE``: summary of a trajectory store (optionally re-verify every trajectory)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import tyro

from rtml.cli.parsing import parse
from rtml.datasets.store.zarr_store import TrajectoryStore

HELP = "summarise a Zarr trajectory store"


@dataclass(kw_only=True)
class InspectConfig:
    store: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="STORE")]  # Zarr trajectory store (path or URL)
    verify: bool = False  # re-read everything: checksums, Hermiticity, trace


def main(argv: list[str]) -> int:
    cfg = parse(InspectConfig, argv, prog="rtml inspect", description=__doc__)
    return run(cfg.store, cfg.verify)


def format_summary(s: dict) -> str:
    size = f"{s['bytes_on_disk'] / 1e6:.1f} MB" if s["bytes_on_disk"] is not None else "remote"
    lines = [(f"store {s['path']}: {s['trajectories']} trajectories, {s['steps']} steps, density "
             f"{s['density_dtype']}, {size}"),
             f"{'molecule':<10}{'nbf':>5}{'traj':>6}{'steps':>8}  fields"]
    for name, m in sorted(s["molecules"].items()):
        lines.append(f"{name:<10}{m['nbf']:>5}{m['trajectories']:>6}{m['steps']:>8}  {','.join(m['fields'])}")
    return "\n".join(lines)


def run(path: str, verify: bool = False) -> int:
    store = TrajectoryStore(path)
    print(format_summary(store.summary()))
    if verify:
        problems = store.verify(progress=True)
        print(f"verify: {len(store)} trajectories, {len(problems)} problems")
        for p in problems:
            print("  " + p)
        return 1 if problems else 0
    return 0
