"""Build-time precision. e3nn stores Clebsch-Gordan constants in the default dtype *at construction*, so a module
built in float32 and then ``.double()``-ed keeps float32-rounded coefficients (equivariance error ~1e-8). Build
float64 models inside :func:`building` instead; the previous default is restored on exit."""

from __future__ import annotations

import contextlib
import functools

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


def outside_autocast(forward):
    """Run a module's ``forward`` with autocast off and its half-precision float arguments in float32.

    e3nn's tensor products and Clebsch–Gordan contractions are not autocast-safe (their compiled graphs refuse mixed
    dtypes) and the equivariant encoders are cheap next to the dynamics; under bf16 training (DeepSpeed's
    ``torch_autocast`` on GPU) they stay float32, as nequip and MACE keep them."""
    half = (torch.bfloat16, torch.float16)

    def up(x):
        return x.float() if torch.is_tensor(x) and x.dtype in half else x

    @functools.wraps(forward)
    def wrapped(self, *args, **kwargs):
        with torch.autocast("cuda", enabled=False), torch.autocast("cpu", enabled=False):
            return forward(self, *(up(a) for a in args), **{k: up(v) for k, v in kwargs.items()})
    return wrapped
