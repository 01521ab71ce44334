"""The CUDA code paths, on one GPU (``infra/gpu_smoke.sh``): NCCL collectives on the group's device, bf16 autocast
with the physics complex, and a Ray Train + DeepSpeed run on the GPU with bf16 and the NaN-gradient guard.
Every test skips without CUDA; the mamba-ssm kernel and gpu4pyscf engine checks live beside their CPU twins
(``tests/test_models_mamba.py``, ``tests/test_engine_gpu.py``) and the smoke script runs them too."""

from __future__ import annotations

import os

import pytest
import torch
from bf16_check import assert_bf16_keeps_the_physics_complex
from platform_helpers import spawn_ranks

CUDA = torch.cuda.is_available()
pytestmark = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (run infra/gpu_smoke.sh on one)")


def _nccl_rank(rank: int, port: int, out: dict) -> None:
    import torch.distributed as dist

    from rtml.platform.workers import collectives, runtime

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", rank=0, world_size=1)
    collectives.active = lambda: True  # one GPU: run the multi-rank code path through NCCL anyway
    try:
        got = {"device": str(collectives.group_device()),
               "sum": collectives.allreduce_dict({"a": 2.0, "b": 3.0}),
               "vote": runtime.any_rank_nonfinite(1.0, grads_bad=True)}
        m = runtime.Metrics()
        m.add(loss=1.5)
        m.maximum(v=4.0)
        m.step()
        got["metrics"] = m.reduce()[:3]
        try:
            collectives.allreduce_(torch.zeros(2))  # a CPU tensor under NCCL
            got["cpu_refused"] = False
        except collectives.CollectiveDeviceError as exc:
            got["cpu_refused"] = "reduces on cuda:0" in str(exc)
        out[0] = got
    finally:
        dist.destroy_process_group()


def test_nccl_collectives_on_the_group_device():
    out = spawn_ranks(_nccl_rank, 1)
    got = out[0]
    assert got["device"] == "cuda:0" and got["sum"] == {"a": 2.0, "b": 3.0} and got["vote"] == "nan_gradient"
    assert got["metrics"] == ({"loss": 1.5}, {"v": 4.0}, 1) and got["cpu_refused"]


def test_bf16_autocast_keeps_the_physics_complex_on_cuda(small_store):
    assert_bf16_keeps_the_physics_complex(small_store, "cuda")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("nan_in", [None, "gradient"])
def test_train_on_the_gpu_with_bf16(nan_in, tmp_path, small_store, heldout_store):
    import ray
    from platform_helpers import tiny_config

    from rtml.platform.train.driver import run
    from rtml.platform.workers.launch import NonFiniteLossError

    cfg = tiny_config(tmp_path, small_store, heldout_store, name=f"gpu-{nan_in}", max_steps=10, checkpoint_every=5,
                      eval_every=5, **({"nan_at_step": 7} if nan_in else {}))
    cfg.scaling.use_gpu, cfg.scaling.num_workers, cfg.deepspeed.precision = True, 1, "bf16"
    if nan_in:
        cfg.loop.nan_in = nan_in
    ray.shutdown()
    ray.init(num_cpus=4, num_gpus=1, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        if nan_in:
            with pytest.raises(NonFiniteLossError, match=r"a gradient became NaN.*step 7.*step 5\)"):
                run(cfg)
            return
        summary = run(cfg)
    finally:
        ray.shutdown()
    assert summary["final"]["step"] == 10 and os.path.isfile(summary["model"])
    assert summary["rollout"]["model/dipole_nrmse"] < 10
