"""MAML over any ``nn.Module`` with ``torch.func`` — second order, first order (FOMAML), Meta-SGD and ANIL.

The whole interface is ``adapt(params, support) -> params`` plus ``meta_loss(support, query)``: parameters are a
plain ``{name: tensor}`` dict and the model is evaluated with ``torch.func.functional_call``, so the inner loop is
ordinary differentiable tensor algebra:

    θ'_0 = θ,   θ'_{j+1} = θ'_j − α_g ∘ u_g(∇_θ' L_support(θ'_j, batch_j))      (only the adapted names change)
    meta-loss = L_query(θ'_n)

with ``update='sgd'``: u(g) = g; ``'normalized'``: u(g) = g / ‖g_group‖ (α_g is a step length per group);
``'adam'``: u = m̂ / (√v̂ + ε), Adam's moments carried through the inner steps — differentiable, and the same
update family as the fine-tuning baseline, so "equal steps" compares like with like. Adam's first steps are close
to sign(g): their derivative is ≈ 0 except where |g| ~ ε, where it is ~1/ε, so second-order MAML through 'adam'
is nearly singular (finite differences cannot even check it) — use it with ``first_order=True`` (the meta-gradient
then still reaches θ and, through α_g·u, the learning rates). The surrogate's gradients span
orders of magnitude between and within groups: plain SGD cannot lower its loss with any single step size.

With ``first_order=False`` the inner gradients are built with ``create_graph=True`` and ∂meta-loss/∂θ includes the
second-order terms (Hessian-vector products through the inner steps); ``first_order=True`` detaches them (FOMAML).
α_g is one learning rate per parameter group (top-level module), learnable when ``meta_sgd`` (stored as log α).
Another backend only has to provide the same two methods.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call

from rtml.meta.config import LearnerConfig


class _Apply(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, fn, *args):
        return fn(self.model, *args)


class Functional(nn.Module):
    """``model`` evaluated with ``params`` substituted (buffers and missing names from ``model``). Calling it runs
    ``model.forward``; :meth:`apply` runs any function of the model (e.g. an autoregressive rollout through
    ``prepare``/``step``) with the substituted parameters."""

    def __init__(self, model: nn.Module, params: dict[str, torch.Tensor]):
        super().__init__()
        self.model, self.params = model, params
        self.cfg = getattr(model, "cfg", None)

    def forward(self, *args, **kwargs):
        return functional_call(self.model, self.params, args, kwargs, strict=False)

    def apply(self, fn, *args):
        """``fn(model, *args)`` with ``params`` in place of the model's parameters."""
        return functional_call(_Apply(self.model), {f"model.{k}": v for k, v in self.params.items()}, (fn, *args),
                               strict=False)


def group_of(name: str) -> str:
    """Parameter group = top-level module (``decoder.gate.0e.weight`` -> ``decoder``)."""
    return name.split(".", 1)[0]


class MetaLearner(nn.Module):
    """``loss_fn(module, batch) -> scalar`` is the task loss (the same for support and query)."""

    def __init__(self, model: nn.Module, loss_fn: Callable, cfg: LearnerConfig):
        super().__init__()
        self.model, self.loss_fn, self.cfg = model, loss_fn, cfg
        names = [n for n, _ in model.named_parameters()]
        self.adapted = [n for n in names if not cfg.adapt or any(n == p or n.startswith(p + ".") for p in cfg.adapt)]
        if not self.adapted:
            raise ValueError(f"learner.adapt: expected prefixes of parameter names (groups "
                             f"{sorted({group_of(n) for n in names})}), got {cfg.adapt} which select nothing")
        groups = sorted({group_of(n) for n in self.adapted})
        dtype = next(model.parameters()).dtype
        self.log_lrs = nn.ParameterDict({g: nn.Parameter(torch.tensor(math.log(cfg.inner_lr), dtype=dtype),
                                                         requires_grad=cfg.meta_sgd) for g in groups})

    # ------------------------------------------------------------------ state
    def params(self) -> dict[str, torch.Tensor]:
        return dict(self.model.named_parameters())

    def inner_lrs(self) -> dict[str, float]:
        return {g: float(v.detach().exp()) for g, v in self.log_lrs.items()}

    def state(self) -> dict:
        """JSON-safe description saved with a meta-trained model (:func:`from_state` restores it)."""
        return {"inner_lrs": self.inner_lrs(), "inner_steps": self.cfg.inner_steps, "adapt": list(self.cfg.adapt),
                "first_order": self.cfg.first_order, "meta_sgd": self.cfg.meta_sgd, "update": self.cfg.update}

    @classmethod
    def from_state(cls, model: nn.Module, loss_fn: Callable, state: dict) -> MetaLearner:
        cfg = LearnerConfig(inner_steps=int(state["inner_steps"]), inner_lr=1.0, first_order=bool(
            state["first_order"]), meta_sgd=bool(state["meta_sgd"]), adapt=list(state["adapt"]),
                            update=state.get("update", "sgd"))
        learner = cls(model, loss_fn, cfg)
        with torch.no_grad():
            for g, lr in state["inner_lrs"].items():
                learner.log_lrs[g].fill_(math.log(lr))
        return learner

    # ------------------------------------------------------------------ MAML
    def loss(self, params: dict[str, torch.Tensor], batch) -> torch.Tensor:
        return self.loss_fn(Functional(self.model, params), batch)

    def adapt(self, params: dict[str, torch.Tensor], support: list, create_graph: bool | None = None,
              steps: int | None = None) -> dict[str, torch.Tensor]:
        """``steps`` (default ``inner_steps``) SGD steps on the support batches (cycled). ``create_graph``
        (default: not ``first_order``, and only while autograd is recording) keeps the second-order graph."""
        if create_graph is None:
            create_graph = not self.cfg.first_order and torch.is_grad_enabled()
        outer = torch.is_grad_enabled()  # False at test time: plain, memory-light SGD on detached tensors
        params, moments = dict(params), {}
        for j in range(steps or self.cfg.inner_steps):
            with torch.enable_grad():
                loss = self.loss(params, support[j % len(support)])
                leaves = [params[n] for n in self.adapted]
                grads = torch.autograd.grad(loss, leaves, create_graph=create_graph, allow_unused=True)
                grads = {n: (g if create_graph else g.detach()) for n, g in zip(self.adapted, grads) if g is not None}
                # absent names: parameters this batch does not use (e.g. no d shells) stay unchanged
                for n, u in self._directions(grads, moments, j + 1).items():
                    new = params[n] - self.log_lrs[group_of(n)].exp() * u
                    params[n] = new if outer else new.detach().requires_grad_()
        return params

    def _directions(self, grads: dict, moments: dict, t: int) -> dict:
        """Update directions u from gradients (see the module docstring); ``moments`` carries Adam's m, v."""
        if self.cfg.update == "sgd":
            return grads
        if self.cfg.update == "normalized":
            norms: dict = {}
            for n, g in grads.items():
                norms[group_of(n)] = norms.get(group_of(n), 0.0) + g.square().sum()
            return {n: g / (norms[group_of(n)] + 1e-24).sqrt() for n, g in grads.items()}  # smooth at 0
        b1, b2, eps = 0.9, 0.999, 1e-8  # torch.optim.Adam's defaults
        out = {}
        for n, g in grads.items():
            m, v = moments.get(n, (0.0, 0.0))
            m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
            moments[n] = (m, v)
            # torch.optim.Adam's step; the clamp keeps the derivative of √ finite where a gradient is exactly zero
            out[n] = (m / (1 - b1**t)) / ((v / (1 - b2**t)).clamp_min(1e-30).sqrt() + eps)
        return out

    def meta_loss(self, support: list, query: list) -> torch.Tensor:
        """L_query(adapt(θ, support)) averaged over the query batches; differentiable w.r.t. θ and log α."""
        adapted = self.adapt(self.params(), support)
        return sum(self.loss(adapted, b) for b in query) / len(query)
