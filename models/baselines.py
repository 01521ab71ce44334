"""Physics baselines with the surrogate's rollout interface (``prepare``/``init_state``/``step``; usable wherever
:func:`rtml.models.rollout.rollout` takes a model).

* :class:`FrozenXC` — the Kohn–Sham head with the network off: H = h + J[ρ(t)] + V_xc[ρ(0)] + E(t)·r, the same
  :func:`rtml.models.kohn_sham.magnus_step` (same midpoint scheme). An untrained Kohn–Sham model equals it.
  No training, no parameters; it costs two small matrix exponentials and two J contractions a step.

* :class:`LinearXC` — the same with the exact adiabatic xc kernel at ρ(0):
  H = h + J[ρ] + V_xc[ρ(0)] + K_xc[ρ − ρ(0)] + E(t)·r (linear response: exact for weak fields; for hybrids K includes exact exchange, which sees Im ρ).

* :class:`GridXC` — the adiabatic LDA itself on a coarse grid (:mod:`rtml.models.local_xc`, exact δv through
  libxc): H = h + J[ρ] + V_xc[ρ(0)] + Σ_g w χχ (v_xc(n) − v_xc(n0)) + E(t)·r. What the learned local term can at best
  be; LDA functionals, molecules that carry a grid.

With ``linear_response='exact'`` each Magnus step is corrected by :mod:`rtml.models.linear_response` so that its
linear response is the exact one at any step (``LinearXC`` and ``GridXC`` so configured are the physics competitors
at steps larger than the data's, issue 26); the field then enters at the step's nodes (``field_nodes``).

The third baseline, the trivial ρ(t) = ρ(t0), needs no propagation (``rtml.platform.evaluate``).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Literal

import torch
from torch import nn

from rtml.models.inputs import MoleculeBatch
from rtml.models.kohn_sham import KohnShamOperators, magnus_step
from rtml.models.linear_response import exact_response, field_nodes
from rtml.models.local_xc import exact_local, grid_term
from rtml.models.physics import sandwich


@dataclass(kw_only=True)
class FrozenXCConfig:
    ks_iterations: int = 1  # corrector passes of the midpoint (as the Kohn–Sham head's default)
    bundle: int = 1
    stride: int = 1  # data frames per step: the baseline steps Δt = stride·dt of the trajectory it is given
    linear_response: Literal["magnus", "exact"] = "magnus"  # 'exact': Magnus-2 + the exact-minus-Magnus linear map


class FrozenXC(nn.Module):
    """Frozen-xc propagator (module docstring); ``ks_iterations`` as in :class:`SurrogateConfig`."""

    def __init__(self, cfg: FrozenXCConfig | None = None):
        super().__init__()
        self.cfg = cfg or FrozenXCConfig()
        self.state_dtype = torch.complex128

    @property
    def field_nodes(self) -> bool:
        """The rollout passes the field at each step's nodes (start, mean, end) when the step needs them."""
        return self.cfg.linear_response == "exact"

    def prepare(self, mol: MoleculeBatch, rho0: torch.Tensor):
        if mol.ks is None:
            raise ValueError(f"the {type(self).__name__} baseline needs the exact Kohn–Sham terms (MoleculeBatch.ks)")
        ks = KohnShamOperators.from_batch(mol.ks)
        st = SimpleNamespace(ks=ks, s_half=ks.x_inv, lr=None)
        if self.cfg.linear_response == "exact":
            if not isinstance(self, (LinearXC, GridXC)):
                raise ValueError("linear_response='exact' corrects a step with the xc kernel: use LinearXC or GridXC")
            # corrected against its own linearisation: the grid's kernel for the grid LDA
            st.lr = exact_response(ks, self.cfg.ks_iterations, on_grid=isinstance(self, GridXC))
        return st

    def init_state(self, st):
        return None

    def to_orth(self, st, rho: torch.Tensor) -> torch.Tensor:
        return sandwich(st.ks.x_inv, rho.to(device=st.ks.x.device, dtype=torch.complex128))

    def from_orth(self, st, rho_o: torch.Tensor) -> torch.Tensor:
        return sandwich(st.ks.x, rho_o)

    def potential(self, ks: KohnShamOperators):
        return ks.vxc0_o

    def _magnus(self, ks: KohnShamOperators, cur, prev, e_mean, dt):
        return magnus_step(ks, cur, self.potential(ks), e_mean, dt, rho_prev_o=prev, iterations=self.cfg.ks_iterations,
                           batched_terms=True)  # the kernel and grid terms take any leading dimensions

    def step(self, st, state, rho_o, drho_o, e_sub, dt):
        """rho_o, drho_o [B, 2, N, N]; e_sub [1, B, 3] (the field over the step; [1, B, 3 nodes, 3] with
        ``field_nodes``) -> ([1, B, 2, N, N], None)."""
        cur = rho_o.to(torch.complex128)
        prev = cur - drho_o.to(cur.dtype)
        if st.lr is None:
            return self._magnus(st.ks, cur, prev, e_sub[0], dt)[None], state
        nodes = field_nodes(*e_sub[0].to(torch.float64).unbind(-2))  # [B, 3, 3]: start, midpoint, end
        mean = e_sub[0, ..., 1, :]
        return st.lr.correct(self._magnus(st.ks, cur, prev, mean, dt), cur, prev, nodes, dt)[None], state


class LinearXC(FrozenXC):
    """Linear-xc propagator (module docstring): the xc kernel at ρ(0) applied to ρ − ρ(0), evaluated like J."""

    def potential(self, ks: KohnShamOperators):
        if not ks.has_kernel:
            raise ValueError("the linear-xc baseline needs the xc kernel (KohnShamBatch.xc_kernel)")
        return ks.vxc0_o, ks.linear_xc



class GridXC(FrozenXC):
    """Adiabatic-LDA propagator on the local-term grid (module docstring)."""

    def potential(self, ks: KohnShamOperators):
        return ks.vxc0_o, lambda r: grid_term(ks, r, lambda n, dn: exact_local(ks, n))
