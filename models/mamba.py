"""Mamba (selective state-space) block with two backends and one parameterisation.

Parameters and state-dict keys/shapes are those of ``mamba_ssm.Mamba`` (in_proj, conv1d, x_proj, dt_proj, A_log, D,
out_proj), so weights move between backends unchanged:

* ``torch`` — pure PyTorch, any device. Full sequences use a chunked parallel (Hillis-Steele prefix) scan of the linear
  recurrence h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t x_t; only products of decay factors <= 1 appear, so it is stable in
  float32 and exact to rounding against the naive recurrence (:func:`selective_scan_reference`). Memory is
  O(batch · chunk · d_inner · d_state) per chunk.
* ``cuda`` — the mamba-ssm CUDA kernel (``selective_scan_fn``) for full sequences without an initial state; needs a CUDA
  device and the ``gpu`` extra. Recurrent ``step`` is the same few tensor ops on both backends.
* ``auto`` — ``cuda`` when CUDA and mamba-ssm are present, else ``torch``; the choice is in ``Mamba.backend``.

Shapes: inputs [b, T, d_model]; state = (conv_state [b, d_inner, d_conv], ssm_state [b, d_inner, d_state]).
"""

from __future__ import annotations

import importlib.util
import math

import torch
import torch.nn.functional as F
from torch import nn

BACKENDS = ("auto", "torch", "cuda")


def cuda_backend_available() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("mamba_ssm") is not None


def resolve_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"dynamics.backend: expected one of {BACKENDS}, got {name!r}")
    if name == "cuda" and not cuda_backend_available():
        raise RuntimeError("dynamics.backend='cuda' needs a CUDA device and mamba-ssm (pip install 'rtml[gpu]'); "
                           f"cuda available={torch.cuda.is_available()}, "
                           f"mamba_ssm installed={importlib.util.find_spec('mamba_ssm') is not None}")
    if name == "auto":
        return "cuda" if cuda_backend_available() else "torch"
    return name


def _prefix_scan(a: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inclusive scan along dim 1 of h_t = a_t h_{t-1} + u_t (h_{-1} = 0): returns (prod a_1..t, h_t)."""
    off, L = 1, a.shape[1]
    while off < L:
        u = torch.cat([u[:, :off], u[:, off:] + a[:, off:] * u[:, :-off]], dim=1)
        a = torch.cat([a[:, :off], a[:, off:] * a[:, :-off]], dim=1)
        off *= 2
    return a, u


def selective_scan(x, delta, A, B, C, D, z, h0=None, chunk: int = 64):
    """x, delta (after softplus), z: [b, T, d]; A [d, n]; B, C [b, T, n]; D [d]; h0 [b, d, n] -> (y [b,T,d], h_T)."""
    b, T, d = x.shape
    h = x.new_zeros(b, d, A.shape[1]) if h0 is None else h0
    ys = []
    for t0 in range(0, T, chunk):
        sl = slice(t0, min(T, t0 + chunk))
        a = torch.exp(delta[:, sl, :, None] * A)  # [b, L, d, n]
        u = (delta[:, sl] * x[:, sl])[..., None] * B[:, sl, None, :]  # [b, L, d, n]
        acum, hs = _prefix_scan(a, u)
        hs = hs + acum * h[:, None]  # [b, L, d, n]
        ys.append(torch.einsum("bldn,bln->bld", hs, C[:, sl]))
        h = hs[:, -1]
    y = torch.cat(ys, dim=1) + D * x
    return y * F.silu(z), h


def selective_scan_reference(x, delta, A, B, C, D, z, h0=None):
    """Naive sequential recurrence (for tests)."""
    b, T, d = x.shape
    h = x.new_zeros(b, d, A.shape[1]) if h0 is None else h0
    ys = []
    for t in range(T):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * x[:, t])[..., None] * B[:, t, None, :]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, t]))
    y = torch.stack(ys, dim=1) + D * x
    return y * F.silu(z), h


class Mamba(nn.Module):
    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, dt_rank="auto",
                 dt_min: float = 1e-3, dt_max: float = 0.1, dt_init_floor: float = 1e-4, backend: str = "auto",
                 chunk: int = 64):
        super().__init__()
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.backend, self.chunk = resolve_backend(backend), chunk
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        std = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    def init_state(self, batch: int, dtype=None, device=None):
        dtype = dtype or self.in_proj.weight.dtype
        device = device or self.in_proj.weight.device
        return (torch.zeros(batch, self.d_inner, self.d_conv, dtype=dtype, device=device),
                torch.zeros(batch, self.d_inner, self.d_state, dtype=dtype, device=device))

    def _ssm_params(self, x):
        dt, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.linear(dt, self.dt_proj.weight), B, C  # dt without bias [.., d_inner]

    def forward(self, u: torch.Tensor, state=None):
        """u [b, T, d_model] -> (y [b, T, d_model], new state). Continues from ``state`` when given."""
        b = u.shape[0]
        x, z = self.in_proj(u).chunk(2, dim=-1)  # [b, T, d_inner] each
        conv_state, ssm_state = state if state is not None else self.init_state(b, u.dtype, u.device)
        xpad = torch.cat([conv_state[..., 1:], x.transpose(1, 2)], dim=-1)  # [b, d_inner, d_conv-1+T]
        xc = F.silu(F.conv1d(xpad, self.conv1d.weight, self.conv1d.bias, groups=self.d_inner)).transpose(1, 2)
        new_conv = xpad[..., -self.d_conv:] if xpad.shape[-1] >= self.d_conv else \
            F.pad(xpad, (self.d_conv - xpad.shape[-1], 0))
        dt, B, C = self._ssm_params(xc)
        A = -torch.exp(self.A_log.to(u.dtype))  # [d_inner, d_state]
        if self.backend == "cuda" and state is None and u.is_cuda:
            y, h = self._cuda_scan(xc, dt, A, B, C, z)
        else:
            delta = F.softplus(dt + self.dt_proj.bias)
            y, h = selective_scan(xc, delta, A, B, C, self.D.to(u.dtype), z, ssm_state if state is not None else None,
                                  self.chunk)
        return self.out_proj(y), (new_conv, h)

    def _cuda_scan(self, xc, dt, A, B, C, z):
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

        y, h = selective_scan_fn(xc.transpose(1, 2).contiguous(), dt.transpose(1, 2).contiguous(), A.float(),
                                 B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous(), self.D.float(),
                                 z=z.transpose(1, 2).contiguous(), delta_bias=self.dt_proj.bias.float(),
                                 delta_softplus=True, return_last_state=True)
        return y.transpose(1, 2), h

    def step(self, u: torch.Tensor, state):
        """One token u [b, d_model] -> (y [b, d_model], new state); same math as ``mamba_ssm.Mamba.step``."""
        conv_state, ssm_state = state
        x, z = self.in_proj(u).chunk(2, dim=-1)  # [b, d_inner]
        conv_state = torch.cat([conv_state[..., 1:], x[..., None]], dim=-1)  # [b, d_inner, d_conv]
        xc = F.silu((conv_state * self.conv1d.weight[:, 0]).sum(-1) + self.conv1d.bias)
        dt, B, C = self._ssm_params(xc)
        delta = F.softplus(dt + self.dt_proj.bias)  # [b, d_inner]
        A = -torch.exp(self.A_log.to(u.dtype))
        h = torch.exp(delta[..., None] * A) * ssm_state + (delta * xc)[..., None] * B[:, None, :]
        y = (torch.einsum("bdn,bn->bd", h, C) + self.D.to(u.dtype) * xc) * F.silu(z)
        return self.out_proj(y), (conv_state, h)
