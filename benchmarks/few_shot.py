"""Few-shot adaptation on a held-out molecule over several seeds: adapted vs zero-shot vs fine-tuning.

    python benchmarks/few_shot.py --model runs/meta/model.pt --molecule nh3 --support nh3.zarr --shots 5 \
        --seeds 0 1 2 --rollout-steps 16 100

Each seed draws another support/query split and other support windows; every (seed, rollout length) is one
``rtml adapt`` run (logged to MLflow). Prints per-seed dipole nRMSE and the ratios adapted/zero-shot and
adapted/fine-tune, with their means.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from rtml.meta.adapt import AdaptSettings
from rtml.platform.commands.adapt import AdaptConfig, run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--molecule", required=True)
    p.add_argument("--support", nargs="+", required=True)
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rollout-steps", type=int, nargs="+", default=[16, 100])
    p.add_argument("--out", default="runs/few_shot")
    p.add_argument("--tracking-uri", default=None)
    a = p.parse_args()
    rows = []
    for n in a.rollout_steps:
        for seed in a.seeds:
            s = run(AdaptConfig(model=a.model, molecule=a.molecule, support=a.support, shots=a.shots,
                                out=f"{a.out}/r{n}-s{seed}", tracking_uri=a.tracking_uri,
                                settings=AdaptSettings(steps=a.steps, seed=seed, max_steps=n)))
            m = s["metrics"]
            rows.append({"rollout": n, "seed": seed, "steps": s["steps"],
                         **{k: m[f"{k}/dipole_nrmse"] for k in ("zero_shot", "finetune", "adapted", "trivial")},
                         **{f"{k}_query_loss": m[f"{k}/query_loss"] for k in ("zero_shot", "finetune", "adapted")}})
    print(f"\n{a.molecule}, k={a.shots}: dipole nRMSE on the query trajectories")
    print(f"{'rollout':>8}{'seed':>6}{'zero-shot':>11}{'fine-tune':>11}{'adapted':>10}{'trivial':>9}"
          f"{'ad/zs':>8}{'ad/ft':>8}")
    for n in a.rollout_steps:
        sel = [r for r in rows if r["rollout"] == n]
        for r in sel:
            print(f"{n:>8}{r['seed']:>6}{r['zero_shot']:>11.4g}{r['finetune']:>11.4g}{r['adapted']:>10.4g}"
                  f"{r['trivial']:>9.3g}{r['adapted'] / r['zero_shot']:>8.3f}{r['adapted'] / r['finetune']:>8.3f}")
        print(f"{n:>8}{'mean':>6}" + "".join(f"{np.mean([r[k] for r in sel]):>{w}.4g}" for k, w in (
            ("zero_shot", 11), ("finetune", 11), ("adapted", 10), ("trivial", 9))) +
            f"{np.mean([r['adapted'] / r['zero_shot'] for r in sel]):>8.3f}"
            f"{np.mean([r['adapted'] / r['finetune'] for r in sel]):>8.3f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
