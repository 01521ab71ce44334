"""Model + optimiser + LR schedule wrapped in a DeepSpeed engine on the process group Ray Train created.

CPU workers: gloo, fp32, the torch AdamW passed as DeepSpeed's client optimiser (no DeepSpeed op is compiled).
GPU workers: NCCL with bf16 through DeepSpeed's ``torch_autocast`` (fp32 master weights; the complex physics
— Löwdin transforms, matrix exponentials — is not autocast and stays complex64).
"""

from __future__ import annotations

import math
import os

import torch

from rtml.models.surrogate import Surrogate
from rtml.platform.train.config import TrainConfig


def deepspeed_config(cfg: TrainConfig) -> dict:
    ds = {"train_micro_batch_size_per_gpu": cfg.data.batch_size, "gradient_accumulation_steps": 1,
          "zero_optimization": {"stage": cfg.deepspeed.zero_stage}, "gradient_clipping": cfg.optim.grad_clip,
          "steps_per_print": 10**9, "wall_clock_breakdown": False, "zero_allow_untested_optimizer": True}
    if cfg.deepspeed.precision == "bf16":
        ds["torch_autocast"] = {"enabled": True, "dtype": "bfloat16"}
    return ds


def lr_lambda(cfg: TrainConfig):
    warm, total, floor = cfg.optim.warmup_steps, cfg.loop.max_steps, cfg.optim.min_lr_ratio

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        prog = min(1.0, (step - warm) / max(1, total - warm))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * prog))
    return f


def set_distributed_env(rank: int, world_size: int, local_rank: int) -> None:
    """DeepSpeed reads RANK/WORLD_SIZE/LOCAL_RANK even when the process group exists (else it tries MPI)."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(local_rank))
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29500")


def build_engine(cfg: TrainConfig, device: torch.device):
    import deepspeed

    model = Surrogate(cfg.model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, lr_scheduler=sched,
                                           config=deepspeed_config(cfg), dist_init_required=False)
    return engine
