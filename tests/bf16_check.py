"""One training window's loss in fp32 and under bf16 autocast on a device (shared by the CPU test and the GPU
suite): the network runs in bf16, the Kohn–Sham physics (Löwdin transforms, matrix exponentials) must stay
complex64/complex128 and the loss must agree with fp32."""

from __future__ import annotations

import torch

from rtml.models.surrogate import Surrogate
from rtml.platform.train.config import DataConfig, TrainConfig
from rtml.platform.train.data import WindowStream
from rtml.platform.train.objective import window_loss


def bf16_vs_fp32(store: str, device: str) -> dict:
    cfg = TrainConfig(data=DataConfig(store=store, horizons=(8,), batch_size=2))
    stream = WindowStream(store, "all", (8,), 10, 2, 0, 1, seed=0, split_seed=0, split_fractions=(1.0, 0.0),
                          xc_potential=True)
    batch = stream.batch(0)
    torch.manual_seed(0)
    model = Surrogate(cfg.model).to(device)
    complex_dtypes = set()

    def watch(mod, inp, out):
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if torch.is_tensor(t) and t.is_complex():
                complex_dtypes.add(t.dtype)

    handles = [m.register_forward_hook(watch) for m in model.modules()]
    fp32, _, pred32, _ = window_loss(model, batch, cfg.loss, torch.device(device))
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
        bf16, _, pred16, _ = window_loss(model, batch, cfg.loss, torch.device(device))
    for h in handles:
        h.remove()
    return {"fp32": float(fp32), "bf16": float(bf16), "pred_dtype": pred16.dtype, "complex_dtypes": complex_dtypes,
            "pred_diff": float((pred16 - pred32).abs().max()), "pred_scale": float(pred32.abs().max())}


def assert_bf16_keeps_the_physics_complex(store: str, device: str) -> None:
    got = bf16_vs_fp32(store, device)
    assert got["pred_dtype"] in (torch.complex64, torch.complex128), got
    assert torch.bfloat16 not in got["complex_dtypes"] and got["complex_dtypes"] <= {torch.complex64,
                                                                                     torch.complex128}, got
    assert abs(got["bf16"] - got["fp32"]) <= 0.05 * abs(got["fp32"]) + 1e-6, got
    assert got["pred_diff"] <= 1e-2 * got["pred_scale"], got
