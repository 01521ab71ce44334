"""MAML meta-learner (torch.func) and task samplers: meta-gradients against finite differences, FOMAML, Meta-SGD,
ANIL subsets, reproducible tasks and clear errors. CPU, float64, no Ray."""

import math

import numpy as np
import pytest
import torch

from rtml.datasets.errors import DataError
from rtml.datasets.windows import WindowReader
from rtml.meta.config import LearnerConfig
from rtml.meta.learner import MetaLearner
from rtml.meta.tasks import TaskSampler, WindowSource
from rtml.models.losses import LossConfig
from rtml.models.surrogate import Surrogate, preset
from rtml.platform.train.objective import window_loss

# The MAML algebra is loss-agnostic; it is checked on the Kohn–Sham head's Fock-supervision loss (relative xc-potential
# error), which is smooth in the parameters: finite differences resolve its meta-gradients to < 1e-6. (The density
# terms' one-step errors are ~1e-10, where FD noise swamps the Hessian terms.) The relative loss is steep (weak-field
# windows have tiny frozen-xc errors), hence the small plain-SGD learning rates below.
FOCK = LossConfig(reconstruction=0.0, derivative=0.0, hermiticity=0.0, trace=0.0, idempotency=0.0,
                  xc_potential=1.0, hamiltonian_alignment=0.0, rollout_density=0.0, rollout_dipole=0.0)


def _loss(mod, batch):
    return window_loss(mod, batch, FOCK, torch.device("cpu"), unrolled=False)[0]


@pytest.fixture(scope="module")
def setup(small_store):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = Surrogate(preset("debug", xc_anchor="frozen"), dtype=torch.float64)
    with torch.no_grad():  # move off the initialisation, where the decoder output (and many gradients) are zero
        for name, p in model.named_parameters():
            if name.startswith(("decoder.static_w", "coef")):
                p.add_(0.01 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    sampler = TaskSampler(small_store, shots=2, query=1, horizon=4, seed=3)
    task = sampler.sample(0)
    src = WindowSource(small_store, horizon=4)
    src.reader = WindowReader(small_store, 4, "all", kohn_sham=True, xc_potential=True)  # + the V_xc(t) targets
    return model, src.batches(task.support, 2, 2, [0]), src.batches(task.query, 2, 1, [1])


def _directional(learner, model, support, query, v, eps=1e-5):
    """Central difference along v, Richardson-extrapolated (error O(eps⁴) instead of O(eps²))."""
    return (4 * _central(learner, model, support, query, v, eps / 2) - _central(learner, model, support, query, v,
                                                                                  eps)) / 3


def _central(learner, model, support, query, v, eps):
    vals = []
    for s in (1.0, -1.0):
        with torch.no_grad():
            for p, d in zip(model.parameters(), v):
                p.add_(s * eps * d)
        vals.append(float(learner.meta_loss(support, query).detach()))
        with torch.no_grad():
            for p, d in zip(model.parameters(), v):
                p.sub_(s * eps * d)
    return (vals[0] - vals[1]) / (2 * eps)


def _analytic(learner, model, support, query, v):
    g = torch.autograd.grad(learner.meta_loss(support, query), list(model.parameters()), allow_unused=True)
    return sum(float((gi * d).sum()) for gi, d in zip(g, v) if gi is not None)


@pytest.mark.parametrize("update,lr", [("sgd", 1e-7), ("normalized", 0.05)])
def test_second_order_meta_gradient_matches_finite_difference(setup, update, lr):
    model, support, query = setup
    gen = torch.Generator().manual_seed(1)
    v = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in model.parameters()]
    cfg = LearnerConfig(inner_steps=2, inner_lr=lr, meta_sgd=False, update=update, first_order=False)
    fd = _directional(MetaLearner(model, _loss, cfg), model, support, query, v)
    second = _analytic(MetaLearner(model, _loss, cfg), model, support, query, v)
    first = _analytic(MetaLearner(model, _loss, LearnerConfig(inner_steps=2, inner_lr=lr, meta_sgd=False,
                                                              first_order=True, update=update)),
                      model, support, query, v)
    assert abs(second - fd) <= 1e-6 * abs(fd), (second, fd)
    # FOMAML drops the Hessian terms: visibly different at this inner learning rate (the check can fail)
    assert abs(first - fd) > 1e-3 * abs(fd), (first, fd)


def test_meta_sgd_learning_rates_get_the_right_gradient(setup):
    model, support, query = setup
    learner = MetaLearner(model, _loss, LearnerConfig(inner_steps=2, inner_lr=1e-7, meta_sgd=True, update="sgd",
                                                      first_order=False))
    g = torch.autograd.grad(learner.meta_loss(support, query), list(learner.log_lrs.values()))
    k = list(learner.log_lrs).index("decoder")
    eps, vals = 1e-4, []
    for s in (1.0, -1.0):
        with torch.no_grad():
            learner.log_lrs["decoder"].add_(s * eps)
        vals.append(float(learner.meta_loss(support, query).detach()))
        with torch.no_grad():
            learner.log_lrs["decoder"].sub_(s * eps)
    fd = (vals[0] - vals[1]) / (2 * eps)
    assert abs(float(g[k]) - fd) <= 1e-4 * abs(fd), (float(g[k]), fd)
    assert sorted(learner.log_lrs) == sorted({n.split(".")[0] for n, _ in model.named_parameters()})


def test_anil_subset_adapts_only_the_chosen_parameters(setup):
    model, support, query = setup
    learner = MetaLearner(model, _loss, LearnerConfig(inner_steps=1, inner_lr=1e-7, adapt=["decoder", "coef"]))
    assert sorted(learner.log_lrs) == ["coef", "decoder"]
    theta = learner.params()
    with torch.no_grad():
        new = learner.adapt(theta, support)
    changed = {n.split(".")[0] for n in theta if not torch.equal(new[n], theta[n])}
    assert changed and changed <= {"decoder", "coef"}
    # the outer (meta) gradient still reaches the frozen encoders through the query loss
    g = torch.autograd.grad(learner.meta_loss(support, query), [theta["tokenizer.0.weight"]])[0]
    assert float(g.abs().max()) > 0
    with pytest.raises(ValueError, match="learner.adapt"):
        MetaLearner(model, _loss, LearnerConfig(adapt=["no_such_module"]))


def test_test_time_adaptation_lowers_support_loss_and_state_round_trips(setup):
    model, support, _ = setup
    learner = MetaLearner(model, _loss, LearnerConfig(inner_steps=3, inner_lr=1e-8, meta_sgd=True, update="sgd"))
    with torch.no_grad():
        learner.log_lrs["decoder"].fill_(math.log(1e-7))
        before = float(learner.loss(learner.params(), support[0]))
        adapted = learner.adapt(learner.params(), support[:1])
        after = float(learner.loss(adapted, support[0]))
    assert after < before
    assert all(not v.grad_fn for v in adapted.values())  # no graph kept at test time
    again = MetaLearner.from_state(model, _loss, learner.state())
    assert again.inner_lrs() == pytest.approx(learner.inner_lrs(), rel=1e-12)
    assert again.cfg.inner_steps == 3


def test_inner_adam_matches_torch_adam_finetuning(setup):
    """update='adam' with one fixed learning rate is plain Adam: the same steps as the fine-tuning baseline."""
    from rtml.meta.adapt import finetune

    model, support, _ = setup
    learner = MetaLearner(model, _loss, LearnerConfig(inner_steps=3, inner_lr=1e-3, meta_sgd=False, update="adam"))
    with torch.no_grad():
        adapted = learner.adapt(learner.params(), support)
    tuned = dict(finetune(model, _loss, support, 3, 1e-3).named_parameters())
    moved = max(float((tuned[n] - p).abs().max()) for n, p in model.named_parameters())
    diff = max(float((tuned[n] - adapted[n]).abs().max()) for n in tuned)
    assert moved > 1e-4 and diff < 1e-6 * moved / 1e-3, (moved, diff)


def test_task_sampler_is_reproducible_and_checks_shots(small_store):
    s = TaskSampler(small_store, shots=2, query=1, horizon=4, seed=0)
    assert s.molecules == ["h2", "lih"]
    tasks = [s.sample(step) for step in range(6)]
    assert [t.__dict__ for t in tasks] == [s.sample(step).__dict__ for step in range(6)]
    for t in tasks:
        assert len(t.support) == 2 and len(t.query) == 1 and not set(t.support) & set(t.query)
        assert all(i.startswith(t.molecule + "-") for i in t.support + t.query)
    assert {t.molecule for t in tasks} == {"h2", "lih"}
    assert TaskSampler(small_store, shots=2, query=1, horizon=4, exclude=["lih"]).molecules == ["h2"]
    with pytest.raises(DataError, match=r"at least tasks.shots \+ tasks.query = 9"):
        TaskSampler(small_store, shots=8, query=1, horizon=4)
    with pytest.raises(DataError, match="no_such"):
        TaskSampler(small_store, shots=2, query=1, horizon=4, exclude=["no_such"])
    src = WindowSource(small_store, horizon=4)
    a = src.batches(tasks[0].support, 3, 2, [5])
    b = src.batches(tasks[0].support, 3, 2, [5])
    assert [x.starts for x in a] == [x.starts for x in b] and set(a[0].traj_ids) == set(tasks[0].support)
    assert np.allclose(a[0].rho.numpy(), b[0].rho.numpy())


def test_meta_recipes_are_valid_and_bad_fields_are_named():
    from rtml.cli import recipes
    from rtml.meta.config import check
    from rtml.platform.configio import ConfigError, updated

    for fn in recipes.META.values():
        check(fn())
    with pytest.raises(ConfigError, match="learner.update.*'sgd', 'normalized', 'adam'.*'rmsprop'"):
        updated(recipes.meta_debug(), {"learner.update": "rmsprop"})
    with pytest.raises(ConfigError, match="tasks.shots"):
        check(updated(recipes.meta_small(), {"tasks.shots": 0}))


def test_rollout_objective_through_functional_params(setup):
    """The rollout task loss runs prepare/step with substituted parameters: same value and gradient as the module,
    and an inner Adam step on it lowers it."""
    from rtml.meta.learner import Functional
    from rtml.meta.objective import task_loss_fn

    model, support, _ = setup
    loss_fn = task_loss_fn(LossConfig(), torch.device("cpu"), "rollout")
    params = dict(model.named_parameters())
    direct = loss_fn(model, support[0])
    functional = loss_fn(Functional(model, params), support[0])
    assert float(direct) == pytest.approx(float(functional), rel=1e-12)
    name = "decoder.gate.0e.weight"
    g1 = torch.autograd.grad(direct, params[name])[0]
    g2 = torch.autograd.grad(functional, params[name])[0]
    assert float(g1.abs().max()) > 0 and torch.allclose(g1, g2, rtol=1e-10, atol=0)
    shifted = {k: v + 0.01 if k == name else v for k, v in params.items()}
    assert float(loss_fn(Functional(model, shifted), support[0])) != pytest.approx(float(direct), rel=1e-9)
    learner = MetaLearner(model, loss_fn, LearnerConfig(inner_steps=1, inner_lr=1e-5, meta_sgd=False))
    with torch.no_grad():
        adapted = learner.adapt(learner.params(), support[:1])
        assert float(learner.loss(adapted, support[0])) < float(direct)
