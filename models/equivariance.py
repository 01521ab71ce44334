"""One generic rotation-equivariance check for every equivariant module of rtml.

``equivariance_error(fn, inputs, rotate_inputs, rotate_output, R)`` evaluates ``fn`` on the inputs and on the
rotated inputs and returns max |rotate_output(fn(x), R) - fn(rotate_inputs(x, R))|. Helpers build the rotations of
irreps features (:func:`rtml.models.irreps.irreps_rotation`) and of AO matrices (:func:`rtml.models.irreps.ao_rotation`).
Run it at float64: errors of an exactly equivariant path are rounding-level (~1e-12).
"""

from __future__ import annotations

import torch

from rtml.models.irreps import irreps_rotation


def random_rotation(seed: int, dtype=torch.float64) -> torch.Tensor:
    """A proper rotation matrix [3, 3] (QR of a Gaussian matrix, det fixed to +1)."""
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=dtype))
    q = q * torch.sign(torch.diagonal(r))
    return q if torch.det(q) > 0 else -q


def rotate_irreps(x: torch.Tensor, irreps, R: torch.Tensor) -> torch.Tensor:
    """Features [..., irreps.dim] -> rotated features."""
    return x @ irreps_rotation(irreps, R).to(x.dtype).T


def equivariance_error(fn, inputs: tuple, rotate_inputs, rotate_output, R: torch.Tensor) -> float:
    out = fn(*inputs)
    out_rot = fn(*rotate_inputs(inputs, R))
    return float((rotate_output(out, R) - out_rot).detach().abs().max())
