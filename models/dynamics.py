"""Latent dynamics: a stack of Mamba blocks with FiLM geometry conditioning and a Hamiltonian-inspired residual.

Block: ``x + FiLM(Mamba(LayerNorm(x)), g)`` with ``FiLM(x, g) = sigmoid(W_γ g) * x + W_β g`` (γ bounded in (0, 1)).
After the stack, the next latent is ``z_next = z + m + λ K(φ) m`` where ``m`` is the stack output minus its input and
``K(φ) = S_0 + Σ_j φ_j S_j`` is a skew-symmetric generator (S_j = W_j - W_j^T) driven by field invariants φ — the
latent analogue of the commutator -i[H(E), ρ]: a norm-preserving rotation of the latent. Tokens are per atom
([b, T, d_model] with b = molecules × atoms); conditioning is per token sequence ([b, d_cond]).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from rtml.models.mamba import Mamba


@dataclass(kw_only=True)
class DynamicsConfig:
    d_model: int = 128  # width of the dynamics (Mamba) layers
    n_layers: int = 4  # Mamba (or, recurrent=False, MLP) layers
    d_state: int = 16  # SSM state size per channel
    d_conv: int = 4  # width of each layer's causal convolution
    expand: int = 2  # inner expansion factor of each Mamba mixer
    backend: Literal["auto", "torch", "cuda"] = "auto"  # auto | torch | cuda (see rtml.models.mamba)
    chunk: int = 64  # time chunk of the parallel scan
    physics_lambda: float = 1.0  # weight of the field-driven skew-symmetric generator term in each residual
    n_generators: int = 4  # field invariants driving the skew generator
    recurrent: bool = True  # False: Mamba mixers replaced by per-step MLPs (a Markov model; the ablation)


DYNAMICS_PRESETS = {
    "debug": DynamicsConfig(d_model=16, n_layers=2, d_state=4, n_generators=2),
    "small": DynamicsConfig(d_model=64, n_layers=2, d_state=8),
    "base": DynamicsConfig(),
}


class FiLM(nn.Module):
    def __init__(self, d_cond: int, d_model: int):
        super().__init__()
        self.gamma, self.beta = nn.Linear(d_cond, d_model), nn.Linear(d_cond, d_model)

    def forward(self, x, cond):
        return torch.sigmoid(self.gamma(cond)) * x + self.beta(cond)


class MambaFiLMBlock(nn.Module):
    def __init__(self, cfg: DynamicsConfig, d_cond: int):
        super().__init__()
        self.norm = nn.LayerNorm(cfg.d_model)
        self.mamba = Mamba(cfg.d_model, d_state=cfg.d_state, d_conv=cfg.d_conv, expand=cfg.expand,
                           backend=cfg.backend, chunk=cfg.chunk)
        self.film = FiLM(d_cond, cfg.d_model)

    def forward(self, x, cond, state=None):  # x [b, T, d], cond [b, d_cond]
        y, state = self.mamba(self.norm(x), state)
        return x + self.film(y, cond[:, None]), state

    def step(self, x, cond, state):  # x [b, d]
        y, state = self.mamba.step(self.norm(x), state)
        return x + self.film(y, cond), state


class MLPFiLMBlock(nn.Module):
    """The Markov ablation of :class:`MambaFiLMBlock`: same residual/FiLM form, a per-step MLP, no state."""

    def __init__(self, cfg: DynamicsConfig, d_cond: int):
        super().__init__()
        self.norm = nn.LayerNorm(cfg.d_model)
        d_hidden = cfg.expand * cfg.d_model
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, d_hidden), nn.SiLU(), nn.Linear(d_hidden, cfg.d_model))
        self.film = FiLM(d_cond, cfg.d_model)

    def forward(self, x, cond, state=None):  # x [b, T, d]
        return x + self.film(self.mlp(self.norm(x)), cond[:, None]), None

    def step(self, x, cond, state):  # x [b, d]
        return x + self.film(self.mlp(self.norm(x)), cond), None


class Dynamics(nn.Module):
    def __init__(self, cfg: DynamicsConfig, d_cond: int):
        super().__init__()
        self.cfg = cfg
        block = MambaFiLMBlock if cfg.recurrent else MLPFiLMBlock
        self.blocks = nn.ModuleList([block(cfg, d_cond) for _ in range(cfg.n_layers)])
        self.gen = nn.Parameter(torch.randn(cfg.n_generators + 1, cfg.d_model, cfg.d_model) * cfg.d_model**-1)

    @property
    def backend(self) -> str:
        return self.blocks[0].mamba.backend if self.cfg.recurrent else "none (recurrent=False)"

    def init_state(self, batch: int, dtype=None, device=None):
        if not self.cfg.recurrent:
            return [None] * len(self.blocks)
        return [blk.mamba.init_state(batch, dtype, device) for blk in self.blocks]

    def _residual(self, z, m, phi):
        skew = self.gen - self.gen.transpose(-1, -2)  # [G+1, d, d]
        coef = torch.cat([torch.ones_like(phi[..., :1]), phi], dim=-1)  # [..., G+1]
        k_m = torch.einsum("...g,gij,...j->...i", coef, skew, m)
        return z + m + self.cfg.physics_lambda * k_m

    def forward(self, z, cond, phi, state=None):
        """z [b, T, d], cond [b, d_cond], phi [b, T, G] -> (z_next [b, T, d], state)."""
        x, new = z, []
        for i, blk in enumerate(self.blocks):
            x, s = blk(x, cond, None if state is None else state[i])
            new.append(s)
        return self._residual(z, x - z, phi), new

    def step(self, z, cond, phi, state):
        """z [b, d], cond [b, d_cond], phi [b, G] -> (z_next [b, d], state)."""
        x, new = z, []
        for i, blk in enumerate(self.blocks):
            x, s = blk.step(x, cond, state[i])
            new.append(s)
        return self._residual(z, x - z, phi), new
