"""The worker runtime shared by train and meta-train (rtml.platform.workers.runtime), tested once here on a real
two-rank gloo process group; the end-to-end NaN/resume behaviour of both loops is in test_platform_train.py and
test_meta_platform.py."""

import os

import pytest
import torch
import torch.distributed as dist
from platform_helpers import spawn_ranks

from rtml.platform.workers import runtime


def test_last_good_step_arithmetic():
    assert runtime.last_good_step(0, 7, 5) == 5  # the checkpoint at step 5 is the last one before step 7
    assert runtime.last_good_step(0, 3, 5) == 0  # none written yet
    assert runtime.last_good_step(6, 7, 5) == 6  # resumed at 6: the checkpoint it resumed from
    assert runtime.last_good_step(0, 10, 5) == 10  # NaN at step 10: the checkpoint of step 10 was written before


def _ranks(rank: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        m = runtime.Metrics()
        for v in (1.0, 2.0) if rank == 0 else (10.0, 20.0):
            m.add(loss=v, windows=2)
            m.maximum(violation=v * (1 + rank))
            m.step()
        sums, maxima, n, seconds = m.reduce()
        nan_any = runtime.any_rank_nonfinite(float("nan") if rank == 1 else 1.0)
        nan_none = runtime.any_rank_nonfinite(1.0)
        grad_any = runtime.any_rank_nonfinite(1.0, grads_bad=rank == 0)
        both = runtime.any_rank_nonfinite(float("inf") if rank == 0 else 1.0, grads_bad=rank == 1)
        out[rank] = (sums, maxima, n, seconds >= 0, (nan_any, nan_none, grad_any, both), m.sums, m.n)
    finally:
        dist.destroy_process_group()


@pytest.mark.integration  # two processes over torch.distributed (gloo)
def test_metrics_and_nan_policy_reduce_over_ranks():
    out = spawn_ranks(_ranks, 2)
    for rank in (0, 1):
        sums, maxima, n, timed, votes, left, left_n = out[rank]
        assert sums == {"loss": 33.0, "windows": 8.0} and n == 4 and timed  # summed over ranks and steps
        assert maxima == {"violation": 40.0}
        # a NaN loss on rank 1 stops rank 0 too; a NaN gradient on rank 0 stops rank 1; the loss is named first
        assert votes == ("nan_loss", None, "nan_gradient", "nan_loss")
        assert left == {} and left_n == 0  # reduce() resets for the next log interval


def test_metrics_without_a_process_group():
    m = runtime.Metrics()
    m.add(loss=2.0)
    m.step()
    assert m.reduce()[:3] == ({"loss": 2.0}, {}, 1)
    assert runtime.any_rank_nonfinite(float("inf")) == "nan_loss" and runtime.any_rank_nonfinite(0.0) is None
    assert runtime.any_rank_nonfinite(0.0, grads_bad=True) == "nan_gradient"


def test_gradient_watch_and_injected_nan_gradient():
    """The watch sees a NaN gradient the loss does not show (the injected fault: finite loss, NaN backward)."""
    w = torch.nn.Linear(3, 1)
    watch = runtime.GradientWatch(w.parameters())
    loss = w(torch.ones(2, 3)).sum()
    loss.backward()
    assert watch.pop() is False
    poisoned = runtime.inject_nan(w(torch.ones(2, 3)).sum(), "gradient")
    assert torch.isfinite(poisoned)
    poisoned.backward()
    assert watch.pop() is True and watch.pop() is False  # read once, then cleared
    assert torch.isnan(runtime.inject_nan(torch.tensor(1.0), "loss"))


@pytest.mark.parametrize("rank", [0, 1])
def test_rank0_logging_only(rank, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(runtime.tracking, "log_metrics", lambda *a, **k: calls.append(a))
    run = runtime.WorkerRun(rank=rank, world=2, local_rank=rank, device=torch.device("cpu"), uri="sqlite://",
                            run_id="r", out=tmp_path, name="t")
    run.log({"a": 1.0}, 3)
    run.progress(step=3)
    assert len(calls) == (1 if rank == 0 else 0) and (tmp_path / "progress" / f"rank{rank}.json").is_file()


def test_a_checkpoint_of_another_model_layout_is_refused_by_name(tmp_path):
    """Resuming from a checkpoint whose tensors do not fit today's model (another architecture, or a run from before
    issue 29 cut the decoder's dead rows) names the checkpoint and what to do, instead of torch's traceback."""
    from rtml.meta.config import LearnerConfig
    from rtml.meta.learner import MetaLearner
    from rtml.meta.worker import MetaCheckpoint
    from rtml.models.surrogate import Surrogate, preset

    def checkpointer(name: str) -> MetaCheckpoint:
        learner = MetaLearner(Surrogate(preset(name)), lambda *a: None, LearnerConfig())
        return MetaCheckpoint(learner, torch.optim.Adam(learner.parameters()), "cpu")

    checkpointer("debug").save(str(tmp_path), 3)
    assert runtime.load_checkpoint(checkpointer("debug"), str(tmp_path)) == 3
    with pytest.raises(runtime.CheckpointLayoutError, match=f"checkpoint {tmp_path}: its model layout differs.*another --name"):
        runtime.load_checkpoint(checkpointer("small"), str(tmp_path))
