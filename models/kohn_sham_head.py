"""The Kohn–Sham head: the network's decoder matrices M and c_θ made into the xc potential and the k Magnus steps
of one model call — V_θ = V_xc[ρ(0)] + v_scale·M + c_θ ∘ K_xc[ρ − ρ(0)] inside the exact h + J + E·r of
:mod:`rtml.models.kohn_sham` (the operators and the Magnus step, shared with the physics baselines), with the
step's linear response made exact where the model asks for it (:mod:`rtml.models.linear_response`).

``cfg`` is the model's :class:`rtml.models.surrogate.SurrogateConfig`; ``st`` its per-trajectory ``Static``;
``coef`` the linear map latent → ψ (one per atom) that makes c_θ.
"""

from __future__ import annotations

import torch

from rtml.models.kohn_sham import magnus_step
from rtml.models.linear_response import field_nodes


def head_potential(cfg, st, m: torch.Tensor) -> torch.Tensor:
    """V_θ = V_xc[ρ(0)] + v_scale·M (Löwdin, complex128) from decoder matrices m [..., B, 2, N, N]."""
    return st.ks.vxc0_o + cfg.v_scale * m.to(torch.complex128)


def head_steps(cfg, coef, st, m, latent, rho_o, drho_o, e_sub, dt, nodes=None, local=None):
    """k Magnus steps with V_θ of each sub-step -> (states [*, k, B, 2, N, N] complex128, midpoint V_θ
    likewise). V_θ = V_xc[ρ(0)] + v_scale·M + c_θ ∘ K_xc[ρ − ρ(0)] (the last term evaluated like J, at ρ(t) and
    the predicted ρ(t+Δt)); c_θ[i, j] = ψ(atom of i) + ψ(atom of j), ψ linear in the latent and 0 at init
    (``xc_anchor='frozen'``: the untrained model is frozen xc). ``xc_anchor='linear'``: c_θ = 1 + s·(ψ_i + ψ_j)
    and M -> s·M with s = ‖ρ(t) − ρ(0)‖, so the learned terms are second order in Δρ: the untrained model is
    linear xc and every trained one keeps the exact linear response. ``local``: the learned local xc term
    (:class:`rtml.models.local_xc.LocalXC`: the kernel on its grid plus a learned O(Δρ²) remainder), which then
    replaces c_θ ∘ K_xc and is evaluated like it."""
    k = cfg.bundle
    linear = cfg.xc_anchor == "linear"
    # 'linear' anchor: the learned terms are scaled by s = ‖ρ − ρ(0)‖ (Frobenius, Löwdin, both spins; rotation
    # invariant), so they are O(Δρ²) and the linear response is the exact kernel's by construction.
    gate = None
    if linear:  # [*, B] float64; + 1e-30: a finite gradient at Δρ = 0
        d = rho_o.to(torch.complex128) - st.ks.rho_gs_o
        gate = (d.real.square() + d.imag.square()).sum((-1, -2, -3)).add(1e-30).sqrt()
    v = head_potential(cfg, st, m if gate is None else m * gate[..., None, :, None, None, None])  # [*, k, B, 2, N, N]
    lin = None
    if local is not None:
        def lin(r):
            return local(st.ks, r)
    elif cfg.linear_xc_source:
        if not st.ks.has_kernel:
            raise ValueError("model.linear_xc_source=True needs the xc kernel at ρ(0) (KohnShamBatch.xc_kernel; "
                             "pure functionals, global hybrids and HF)")
        psi = coef(latent)[..., 0].to(torch.float64)  # [*, B*A]
        c = psi[..., st.atom_ao][..., :, :, None] + psi[..., st.atom_ao][..., :, None, :]  # [*, B, N, N]
        if linear:
            c = 1.0 + c * gate[..., None, None]
        c = (c * st.mol.basis_mask[:, :, None] * st.mol.basis_mask[:, None, :]).unsqueeze(-3)

        def lin(r):
            return c * st.ks.linear_xc(r)
    cur = rho_o.to(torch.complex128)
    prev = cur - drho_o.to(torch.complex128) / k
    out, pots = [], []
    for j in range(k):
        vj = v[..., j, :, :, :, :]
        nxt, vmid = magnus_step(st.ks, cur, vj if lin is None else (vj, lin), e_sub[..., j, :, :], dt,
                                rho_prev_o=prev, iterations=cfg.ks_iterations, return_potential=True,
                                batched_terms=True)
        if st.lr is not None:  # the step's linear response made exact (rtml.models.linear_response)
            nxt = st.lr.correct(nxt, cur, prev, field_nodes(*nodes[..., j, :, :, :].unbind(-2)), dt)
        prev, cur = cur, nxt
        out.append(cur)
        pots.append(vmid)
    return torch.stack(out, dim=-5), torch.stack(pots, dim=-5)
