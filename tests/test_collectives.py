"""Every collective sees tensors on the process group's device (NCCL reduces CUDA tensors only).

Without a GPU the check runs against a stand-in device: ``group_device`` is made to answer ``meta`` (a device no
tensor lands on by accident) and ``torch.distributed.all_reduce`` is replaced by a spy that records the device of
what it is handed. A collective that builds its tensor on the CPU, as one did before (issue 25), fails here."""

import ast
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from rtml.meta import worker as meta_worker
from rtml.platform.workers import collectives, runtime

ROOT = Path(__file__).resolve().parents[1]
COLLECTIVES = {"all_reduce", "all_gather", "all_gather_object", "broadcast", "broadcast_object_list", "reduce",
               "reduce_scatter", "all_to_all", "gather", "scatter", "send", "recv"}


class _Seen(Exception):
    pass


@pytest.fixture
def fake_group(monkeypatch):
    """A two-rank 'group' reducing on the meta device; the spy raises after recording (meta tensors hold no
    values to reduce)."""
    seen = []

    def spy(tensor, op=None, group=None, async_op=False):
        seen.append(tensor.device)
        raise _Seen

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 2)
    monkeypatch.setattr(dist, "get_backend", lambda *a, **k: "fake")
    monkeypatch.setattr(dist, "all_reduce", spy)
    monkeypatch.setattr(collectives, "group_device", lambda: torch.device("meta"))
    return seen


def test_every_collective_of_the_loops_is_on_the_group_device(fake_group):
    calls = [lambda: collectives.allreduce_dict({"a": 1.0}),
             lambda: runtime.any_rank_nonfinite(1.0, grads_bad=True),
             lambda: _metrics().reduce()]
    for call in calls:
        with pytest.raises(_Seen):
            call()
    p = torch.nn.Parameter(torch.zeros(3, device="meta"))
    with pytest.raises(_Seen):
        meta_worker._average_grads([p], world=2)  # the meta-gradient, on the model's device
    assert fake_group == [torch.device("meta")] * 4


def test_a_tensor_off_the_group_device_is_refused_by_name(fake_group):
    with pytest.raises(collectives.CollectiveDeviceError, match="tensor on cpu.*reduces on meta"):
        collectives.allreduce_(torch.zeros(2))
    assert fake_group == []  # refused before the backend sees it


def test_nccl_reduces_on_the_current_cuda_device(monkeypatch):
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_backend", lambda *a, **k: "nccl")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    assert collectives.group_device() == torch.device("cuda", 3)
    monkeypatch.setattr(dist, "get_backend", lambda *a, **k: "gloo")
    assert collectives.group_device() == torch.device("cpu")


def test_no_collective_bypasses_the_collectives_module():
    """Any ``dist.<collective>(…)`` call in the package outside collectives.py would escape the device check."""
    offenders = []
    for folder in ("datasets", "models", "platform", "meta"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == "collectives.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                        node.func.attr in COLLECTIVES and isinstance(node.func.value, ast.Name) and \
                        node.func.value.id in ("dist", "torch_dist", "distributed"):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.func.attr}")
    assert not offenders, offenders


def _metrics():
    m = runtime.Metrics()
    m.add(loss=1.0)
    m.step()
    return m
