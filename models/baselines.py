"""Physics baselines with the surrogate's rollout interface (``prepare``/``init_state``/``step``; usable wherever
:func:`rtml.models.rollout.rollout` takes a model).

* :class:`FrozenXC` — the Kohn–Sham head with the network off: H = h + J[ρ(t)] + V_xc[ρ(0)] + E(t)·r, the same
  :func:`rtml.models.kohn_sham.magnus_step` (same midpoint scheme). An untrained Kohn–Sham model equals it.
  No training, no parameters; it costs two small matrix exponentials and two J contractions a step.

* :class:`LinearXC` — the same with the exact adiabatic xc kernel at ρ(0):
  H = h + J[ρ] + V_xc[ρ(0)] + K_xc[ρ − ρ(0)] + E(t)·r (linear response: exact for weak fields; for hybrids K includes exact exchange, which sees Im ρ).

The third baseline, the trivial ρ(t) = ρ(t0), needs no propagation (``rtml.platform.evaluate``).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch
from torch import nn

from rtml.models.inputs import MoleculeBatch
from rtml.models.kohn_sham import KohnShamOperators, magnus_step
from rtml.models.physics import sandwich


@dataclass(kw_only=True)
class FrozenXCConfig:
    ks_iterations: int = 1  # corrector passes of the midpoint (as the Kohn–Sham head's default)
    bundle: int = 1


class FrozenXC(nn.Module):
    """Frozen-xc propagator (module docstring); ``ks_iterations`` as in :class:`SurrogateConfig`."""

    def __init__(self, cfg: FrozenXCConfig | None = None):
        super().__init__()
        self.cfg = cfg or FrozenXCConfig()
        self.state_dtype = torch.complex128

    def prepare(self, mol: MoleculeBatch, rho0: torch.Tensor):
        if mol.ks is None:
            raise ValueError("the frozen-xc baseline needs the exact Kohn–Sham terms (MoleculeBatch.ks)")
        ks = KohnShamOperators.from_batch(mol.ks)
        return SimpleNamespace(ks=ks, s_half=ks.x_inv, s_inv_half=ks.x)

    def init_state(self, st):
        return None

    def to_orth(self, st, rho: torch.Tensor) -> torch.Tensor:
        return sandwich(st.ks.x_inv, rho.to(device=st.ks.x.device, dtype=torch.complex128))

    def from_orth(self, st, rho_o: torch.Tensor) -> torch.Tensor:
        return sandwich(st.ks.x, rho_o)

    def potential(self, st):
        return st.ks.vxc0_o

    def step(self, st, state, rho_o, drho_o, e_sub, dt):
        """rho_o, drho_o [B, 2, N, N]; e_sub [1, B, 3] -> ([1, B, 2, N, N], None)."""
        rho_o = rho_o.to(torch.complex128)
        nxt = magnus_step(st.ks, rho_o, self.potential(st), e_sub[0], dt,
                          rho_prev_o=rho_o - drho_o.to(rho_o.dtype), iterations=self.cfg.ks_iterations)
        return nxt[None], state


class LinearXC(FrozenXC):
    """Linear-xc propagator (module docstring): the xc kernel at ρ(0) applied to ρ − ρ(0), evaluated like J."""

    def potential(self, st):
        if st.ks.kxc is None:
            raise ValueError("the linear-xc baseline needs the xc kernel (KohnShamBatch.xc_kernel)")
        return st.ks.vxc0_o, st.ks.linear_xc
