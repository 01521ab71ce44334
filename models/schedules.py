"""Training-schedule helpers: the horizon curriculum; temporal bundling.

Temporal bundling itself lives in the model (``SurrogateConfig.bundle`` = k sub-steps per call, the last one fed
back as the next input); it is fixed for a model because the decoder emits k sets of outputs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(kw_only=True)
class HorizonCurriculum:
    """Window length (steps) per training step: ``stages`` in order, ``steps_per_stage`` each, then the last."""
    stages: tuple[int, ...] = (16, 32, 48, 64)
    steps_per_stage: int = 1000

    def horizon(self, step: int) -> int:
        return self.stages[min(step // self.steps_per_stage, len(self.stages) - 1)]

