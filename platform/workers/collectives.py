"""Every collective of rtml's own loops, on the process group's device.

NCCL (the GPU backend, :func:`rtml.platform.train.driver.build_trainer`) only reduces CUDA tensors and gloo only CPU
ones: a tensor built on the wrong device raises at the first step on every rank. So the training loops never call
``torch.distributed`` directly; they call :func:`allreduce_dict` (scalars: metrics, the NaN vote) and
:func:`allreduce_` (a tensor: the meta-gradient), which put values on :func:`group_device` and refuse, naming both
devices, a tensor that is elsewhere. ``tests/test_collectives.py`` fails if any collective in the package bypasses
this module or sees a tensor off the group's device. (DeepSpeed's own collectives are DeepSpeed's.)
"""

from __future__ import annotations

import torch
import torch.distributed as dist


class CollectiveDeviceError(RuntimeError):
    """A tensor handed to a collective is not on the process group's device."""


def group_device() -> torch.device:
    """The device the default process group reduces on: the current CUDA device under NCCL, else the CPU."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def active() -> bool:
    """Whether there is a process group with more than one rank."""
    return dist.is_initialized() and dist.get_world_size() > 1


def allreduce_(tensor: torch.Tensor, op=dist.ReduceOp.SUM) -> torch.Tensor:
    """In-place all-reduce of ``tensor`` over ranks (a no-op without a multi-rank group); ``tensor`` must live on
    :func:`group_device` (a clear error otherwise, not NCCL's)."""
    if not active():
        return tensor
    want = group_device()
    if tensor.device != want:
        raise CollectiveDeviceError(f"all_reduce: tensor on {tensor.device}, but the process group "
                                    f"({dist.get_backend()}) reduces on {want}")
    dist.all_reduce(tensor, op=op)
    return tensor


def allreduce_dict(values: dict, op=dist.ReduceOp.SUM) -> dict:
    """{name: float} reduced over ranks (a no-op without a process group or with one rank); one all-reduce of a
    float64 vector built on :func:`group_device`."""
    if not active():
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=group_device())  # [K]
    allreduce_(t, op)
    return dict(zip(keys, t.cpu().tolist()))
