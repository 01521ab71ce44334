"""Thresholds of adaptive re-anchoring (``rtml propagate``): one small typed config, the single source of defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(kw_only=True)
class HybridConfig:
    """The surrogate propagates while every check stays under its threshold; when one trips, the reference engine
    takes over for ``anchor_steps`` steps from the last state that passed, then hands a fresh state back (the
    models' recurrent state re-warmed on the reference frames).

    * ``max_spread`` — ensemble dipole spread (std over members, norm, e·bohr) relative to the largest induced
      dipole |μ(t) − μ(0)| seen so far (floored at ``spread_floor`` e·bohr); needs ≥ 2 models.
    * ``max_trace_error`` (electrons), ``max_hermiticity_error`` (max|ρ − ρ†|, Löwdin), ``max_idempotency_error``
      (max|ρ² − nρ|, Löwdin): physical validity of the primary model's state.
    * ``max_model_steps`` — consecutive surrogate steps before a safety anchor; ``None``: no limit; ``0``: the
      surrogate never steps (the run *is* the reference engine: the check that anchoring is exact).
    * ``reference_every`` — the user's forced anchoring: after every M surrogate steps (0: off).
    * ``warmup_steps`` — reference steps at the start (≥ 1: the models' context; 2 clears a kick at t = dt/2).
    """
    max_spread: float = 0.2  # ensemble dipole spread relative to the largest induced dipole so far (>= 2 models)
    spread_floor: float = 1e-4  # e·bohr, floor of the induced dipole the spread is relative to
    max_trace_error: float = 1e-6  # |tr ρS − N| of the primary model's state, electrons
    max_hermiticity_error: float = 1e-8  # max|ρ − ρ†| (Löwdin) of the primary model's state
    max_idempotency_error: float = 1e-6  # max|ρ² − nρ| (Löwdin) of the primary model's state
    max_model_steps: int | None = 1000  # consecutive surrogate steps before a safety anchor (None: no limit)
    reference_every: int = 0  # forced anchoring after every M surrogate steps (0: off)
    anchor_steps: int = 20  # reference steps per anchoring
    warmup_steps: int = 2  # reference steps at the start (>= 1: the models' context; 2 clears a kick at t = dt/2)

    def __post_init__(self):
        for name in ("max_spread", "spread_floor", "max_trace_error", "max_hermiticity_error",
                     "max_idempotency_error"):
            if not getattr(self, name) > 0:
                raise ValueError(f"hybrid.{name}: expected a positive number, got {getattr(self, name)!r}")
        if self.max_model_steps is not None and self.max_model_steps < 0:
            raise ValueError(f"hybrid.max_model_steps: expected None or an integer >= 0, got {self.max_model_steps}")
        if self.reference_every < 0:
            raise ValueError(f"hybrid.reference_every: expected an integer >= 0, got {self.reference_every}")
        if self.anchor_steps < 1:
            raise ValueError(f"hybrid.anchor_steps: expected an integer >= 1, got {self.anchor_steps}")
        if self.warmup_steps < 1:
            raise ValueError(f"hybrid.warmup_steps: expected an integer >= 1, got {self.warmup_steps}")

    @property
    def step_limit(self) -> int | None:
        """Consecutive surrogate steps allowed before an anchor (the tighter of the two limits)."""
        limits = [x for x in (self.max_model_steps, self.reference_every or None) if x is not None]
        return min(limits) if limits else None
