"""Training-schedule helpers: variance curriculum, horizon curriculum, temporal bundling.

Temporal bundling itself lives in the model (``SurrogateConfig.bundle`` = k sub-steps per call, the last one fed
back as the next input); it is fixed for a model because the decoder emits k sets of outputs. Push-forward training is :func:`rtml.models.rollout.pushforward`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(kw_only=True)
class VarianceCurriculum:
    """Start with the highest-variance density elements, add the quieter ones as training progresses.

    ``stages`` are progress thresholds in [0, 1]; before ``stages[i]`` only elements above the ``keep_quantiles[i]``
    quantile of the variance count. Weights are 1/variance on the kept elements, normalised to mean 1."""
    stages: tuple[float, ...] = (0.3, 0.6, 1.0)
    keep_quantiles: tuple[float, ...] = (0.5, 0.25, 0.0)
    eps: float = 1e-10

    def weights(self, variances: torch.Tensor, progress: float) -> torch.Tensor:
        q = self.keep_quantiles[-1]
        for stage, quant in zip(self.stages, self.keep_quantiles):
            if progress < stage:
                q = quant
                break
        flat = variances.flatten()
        thr = torch.quantile(flat.double(), q).to(variances.dtype) if q > 0 else flat.min() - 1
        w = torch.where(variances > thr, 1.0 / (variances + self.eps), torch.zeros_like(variances))
        return w / w.mean().clamp_min(1e-30)


@dataclass(kw_only=True)
class HorizonCurriculum:
    """Window length (steps) per training step: ``stages`` in order, ``steps_per_stage`` each, then the last."""
    stages: tuple[int, ...] = (16, 32, 48, 64)
    steps_per_stage: int = 1000

    def horizon(self, step: int) -> int:
        return self.stages[min(step // self.steps_per_stage, len(self.stages) - 1)]

