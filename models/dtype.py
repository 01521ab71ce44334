"""Build-time precision. e3nn stores Clebsch-Gordan constants in the default dtype *at construction*, so a module
built in float32 and then ``.double()``-ed keeps float32-rounded coefficients (equivariance error ~1e-8). Build
float64 models inside :func:`building` instead; the previous default is restored on exit."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def building(dtype: torch.dtype):
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"model dtype: expected torch.float32 or torch.float64, got {dtype}")
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)
