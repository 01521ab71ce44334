"""Autoregressive rollout: ``rollout(model, mol, initial_state, field, n_steps, dt)``.

Keeps the Mamba recurrent state, batches trajectories of different molecules (padded :class:`MoleculeBatch`), and
streams: only the current and previous density live in memory unless frames are stored (``store_every``; 0 stores
none), so memory does not grow with ``n_steps``. ``context`` frames (reference densities ending at the initial
state) warm up the recurrent state with teacher forcing first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils._pytree import tree_map
from tqdm.auto import tqdm

from rtml.models.inputs import MoleculeBatch


@dataclass
class RolloutResult:
    states: torch.Tensor  # [B, n_stored, 2, N, N] AO densities at steps `steps`
    steps: list[int]  # frame index (1..n_steps) of each stored state
    final: torch.Tensor  # [B, 2, N, N] AO density after n_steps


def rollout(model, mol: MoleculeBatch, initial_state: torch.Tensor, field: torch.Tensor, n_steps: int, dt: float,
            store_every: int = 1, context: torch.Tensor | None = None, progress: bool = False,
            callback=None, detach_every: int = 0, field_mid: torch.Tensor | None = None) -> RolloutResult:
    """initial_state [B, 2, N, N] AO; field [B, n_steps+1, 3] a.u. on the frame grid starting at the initial state;
    context [B, Tc, 2, N, N] reference frames *before* the initial state (optional, spacing dt).
    ``callback(step, rho_ao)`` is called for every frame (e.g. to accumulate dipoles without storing).
    ``detach_every`` > 0: truncated back-propagation through time, the state and the recurrent state are detached
    every that many steps (unrolled training). ``field_mid`` [B, n_steps, 3]: the field over each step (its mean on a
    finer grid when the steps are strided, :meth:`rtml.datasets.trajectory.Trajectory.strided`); default the
    midpoint of ``field``."""
    with torch.backends.opt_einsum.flags(enabled=False):  # per-step einsums are tiny: path search costs ~25%
        return _rollout(model, mol, initial_state, field, n_steps, dt, store_every, context, progress, callback,
                        detach_every, field_mid)


def _rollout(model, mol, initial_state, field, n_steps, dt, store_every, context, progress, callback,
             detach_every, field_mid=None) -> RolloutResult:
    k = model.cfg.bundle
    if n_steps % k:
        raise ValueError(f"n_steps={n_steps} must be a multiple of model.bundle={k}")
    if field.shape[1] < n_steps + 1:
        raise ValueError(f"field has {field.shape[1]} frames; rollout of {n_steps} steps needs {n_steps + 1}")
    st = model.prepare(mol, initial_state if context is None else context[:, 0])
    field = field.to(device=st.s_half.device, dtype=torch.float64)
    e_mid = (0.5 * (field[:, 1:n_steps + 1] + field[:, :n_steps]) if field_mid is None else
             field_mid[:, :n_steps].to(device=field.device, dtype=torch.float64)).transpose(0, 1)  # [n_steps, B, 3]
    if getattr(model, "field_nodes", False):  # the field at each step's start, its mean over it, its end
        ends = field[:, :n_steps + 1].transpose(0, 1)  # [n_steps+1, B, 3]
        e_mid = torch.stack([ends[:-1], e_mid, ends[1:]], dim=-2)  # [n_steps, B, 3 nodes, 3]
    state = model.init_state(st)
    prev = None
    if context is not None:  # teacher-forced warm-up at stride k
        ctx = model.to_orth(st, context.transpose(0, 1))
        for i in range(0, ctx.shape[0], k):
            drho = torch.zeros_like(ctx[i]) if prev is None else ctx[i] - prev
            e = torch.zeros(k, *e_mid.shape[1:], dtype=e_mid.dtype, device=e_mid.device)
            _, state = model.step(st, state, ctx[i], drho, e, dt)
            prev = ctx[i]
    cur = model.to_orth(st, initial_state)
    stored, steps = [], []
    bar = tqdm(total=n_steps, desc="rollout", disable=not progress, unit="step")
    for t in range(0, n_steps, k):
        if detach_every and t and t % detach_every < k:
            cur, prev = cur.detach(), None if prev is None else prev.detach()
            state = tree_map(lambda x: x.detach() if torch.is_tensor(x) else x, state)
        drho = torch.zeros_like(cur) if prev is None else cur - prev
        nxt, state = model.step(st, state, cur, drho, e_mid[t:t + k], dt)  # [k, B, 2, N, N]
        for j in range(k):
            frame = t + j + 1
            if callback is not None or (store_every and frame % store_every == 0):
                ao = model.from_orth(st, nxt[j])
                if callback is not None:
                    callback(frame, ao)
                if store_every and frame % store_every == 0:
                    stored.append(ao)
                    steps.append(frame)
        prev, cur = cur, nxt[-1]
        bar.update(k)
    bar.close()
    final = model.from_orth(st, cur)
    states = torch.stack(stored, dim=1) if stored else final.new_zeros(final.shape[0], 0, *final.shape[1:])
    return RolloutResult(states=states, steps=steps, final=final)
