"""A network-free local-xc model at another step: the same u_θ, ``model.stride = K`` and the exact linear response.

    python benchmarks/restride.py runs/corpus/local9c/model.pt --stride 8 --out runs/k8local/zero/model.pt

Only models without a network (``model.network = false``, the ``local``/``local8`` recipes) are re-strided: their
one learned part, u_θ(n), is a function of the density at a point, with nothing tied to the step it was trained
at; a network model's dynamics are (train it at that stride: recipe ``stride8``). The new file's meta names its
source.
"""

from __future__ import annotations

import argparse
import dataclasses

from rtml.models.surrogate import Surrogate
from rtml.platform.modelio import load_model, save_model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="model.pt of a network-free local-xc model")
    p.add_argument("--stride", type=int, required=True, help="data frames per model step (K)")
    p.add_argument("--out", required=True, help="where to write the re-strided model.pt")
    a = p.parse_args(argv)
    base = load_model(a.model)
    if base.cfg.network or not base.cfg.local_xc.enabled:
        raise SystemExit(f"{a.model}: field 'config.network' is {base.cfg.network} (local_xc.enabled "
                         f"{base.cfg.local_xc.enabled}); expected a network-free local-xc model (recipes local, "
                         "local8) — a network's learned dynamics belong to its training stride")
    cfg = dataclasses.replace(base.cfg, stride=a.stride, linear_response="exact" if a.stride > 1 else
                              base.cfg.linear_response)
    model = Surrogate(cfg)
    model.load_state_dict(base.state_dict())
    save_model(model, a.out, {**base.rtml_meta, "restrided_from": str(a.model)})
    print(f"{a.out}: stride {cfg.stride}, linear_response {cfg.linear_response!r} (u_θ of {a.model})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
