"""The simplest few-shot learner there is: a per-molecule linear map ρ − ρ(0) → V_xc − V_xc(0), fitted by ridge
regression on the support trajectories' recorded V_xc and used inside the exact linear-xc propagator in place of
the adiabatic kernel at ρ(0).

The map lives where the kernel does (:mod:`rtml.datasets.xc_kernel`): the Löwdin basis of each support geometry,
pair coordinates (features d(Re δP) [S·M], targets the upper triangle of Re δV [S·M], M = N(N+1)/2), so
:class:`RidgeXC` is :class:`rtml.models.baselines.LinearXC` with its ``sym`` kernel replaced. Fitting on frames of
moderate and strong fields lets it absorb what the linear kernel misses on average (it stays linear in δP). The
exact-exchange part on Im ρ (hybrids) is kept from the exact kernel: the recorded V_xc's imaginary part is exact
exchange, which the kernel already has exactly. Dense pair coordinates: N ≤ ``MAX_NBF`` functions.

``anchor=True`` fits the *residual* to the exact kernel instead (targets δV − K₀[δP], K₀ the kernel at ρ(0) of each
support geometry) and adds the fitted correction to the query geometry's own kernel — ridge shrinks toward linear xc
rather than toward no kernel at all (``ridge_xc_anchored`` in ``rtml adapt``). From scratch (``anchor=False``, the
literal "linear map fitted on the support") the map knows only the directions of δP the support excited.

The regularisation strength is chosen by scikit-learn's efficient leave-one-out (``RidgeCV``, generalised
cross-validation) over ``ALPHAS`` × the largest eigenvalue of dᵀd (d the support frames' features). Neighbouring
frames are nearly copies, so leave-one-frame-out favours α → 0; for the map from scratch that is what works (two
H2O kicks spanning x, y, z: dipole nRMSE 1.7e-4 on a (1,1,1) kick, linear xc 1.0e-4; 0.40 at α = 1e-4 λ_max, where
the weakly excited directions are shrunk away — leave-one-trajectory-out picks that), but the anchored correction
then amplifies float32 noise in directions the support barely excited (fitted on one x-kick: 0.016 on a (0,1,1)
kick at α = 1e-8, 7e-5 — linear xc's — from 1e-4 on). The anchored grid therefore starts at 1e-4
(``ALPHAS_ANCHORED``: weakly excited directions stay at the prior K₀).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from sklearn.linear_model import RidgeCV

from rtml.datasets.kohn_sham import kohn_sham_terms, static_of
from rtml.datasets.xc_kernel import DENSE_MAX_NBF, pack, sym_coords
from rtml.models.baselines import FrozenXCConfig, LinearXC
from rtml.models.inputs import MoleculeBatch

MAX_NBF = DENSE_MAX_NBF  # the map is dense in pair coordinates, [S·M]² float64
ALPHAS = tuple(10.0 ** np.arange(-8, 2))  # × λ_max(dᵀd) (module docstring): the map from scratch
ALPHAS_ANCHORED = ALPHAS[4:]  # the correction to K₀: from 1e-4 (module docstring)


def _lowdin(overlap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S^-½, S^½) [N, N] float64 of an AO overlap."""
    w, v = np.linalg.eigh(overlap)
    return (v / np.sqrt(w)) @ v.T, (v * np.sqrt(w)) @ v.T


def support_pairs(traj, source: str = "<memory>") -> tuple[np.ndarray, np.ndarray]:
    """(features [T-1, S·M], targets [T-1, S·M]) float64 of one trajectory with recorded V_xc: the pair
    coordinates of Re(ρ(t) − ρ(0)) and the upper triangle of Re(V_xc(t) − V_xc(0)), both in the Löwdin basis of its
    geometry (S = the store's spin channels: 1 = total density of a closed shell)."""
    if traj.xc_potential is None:
        raise ValueError(f"{source}: field 'dynamics/xc_potential' is missing; the ridge xc map is fitted on the "
                         "recorded V_xc (regenerate with `rtml generate`, which records it)")
    x, x_inv = _lowdin(np.asarray(traj.overlap, dtype=np.float64))
    dp = np.asarray(traj.density[1:] - traj.density[:1]).real  # [T-1, S, N, N]
    dv = np.asarray(traj.xc_potential[1:] - traj.xc_potential[:1]).real.astype(np.float64)
    d = sym_coords(x_inv @ dp @ x_inv)  # [T-1, S, M]
    v = pack(x @ dv @ x)  # [T-1, S, M]
    return d.reshape(len(d), -1), v.reshape(len(v), -1)


def _exact_kernel(traj) -> np.ndarray:
    """The dense exact kernel at ρ(0) of a trajectory's geometry, [S·M, S·M] float64 (Löwdin pair coordinates)."""
    sym = kohn_sham_terms(static_of(traj), traj.density[0], kernel_method="dense").xc_kernel.sym  # [S, M, S, M]
    return sym.reshape(sym.shape[0] * sym.shape[1], -1)


def fit_ridge_xc(trajectories: list, sources: list[str] | None = None, anchor: bool = False
                 ) -> tuple[np.ndarray, float]:
    """Ridge map W [S·M, S·M] float64 (δV = W d; with ``anchor`` the correction δV − K₀ d = W d) from support
    trajectories of one molecule (any geometries, same basis); -> (W, the chosen regularisation strength α)."""
    if not trajectories:
        raise ValueError("the ridge xc map needs at least one support trajectory")
    sources = sources or [f"support[{i}]" for i in range(len(trajectories))]
    nbf = {t.nbf for t in trajectories}
    if len(nbf) != 1 or next(iter(nbf)) > MAX_NBF:
        raise ValueError(f"{sources[0]}: the ridge xc map needs one basis size ≤ {MAX_NBF} functions, got {sorted(nbf)}")
    pairs = [support_pairs(t, s) for t, s in zip(trajectories, sources)]
    if anchor:
        pairs = [(d, v - d @ _exact_kernel(t).T) for (d, v), t in zip(pairs, trajectories)]
    d = np.concatenate([p[0] for p in pairs])  # [F, S·M]
    v = np.concatenate([p[1] for p in pairs])  # [F, S·M]
    scale = float(np.linalg.eigvalsh(d.T @ d)[-1]) or 1.0
    grid = ALPHAS_ANCHORED if anchor else ALPHAS
    ridge = RidgeCV(alphas=[a * scale for a in grid], fit_intercept=False).fit(d, v)
    return np.asarray(ridge.coef_, dtype=np.float64), float(ridge.alpha_) / scale


class RidgeXC(LinearXC):
    """Linear xc with the fitted map ``w`` [S·M, S·M] in place of the exact kernel's ``sym`` part (``anchor``: added
    to it; module docstring); every other term (h, J, V_xc(ρ0), exact exchange on Im ρ, the field) is the exact
    one."""

    def __init__(self, w: np.ndarray, anchor: bool = False, cfg: FrozenXCConfig | None = None):
        super().__init__(cfg)
        self.anchor = anchor
        self.register_buffer("w", torch.as_tensor(np.asarray(w), dtype=torch.float64))

    def prepare(self, mol: MoleculeBatch, rho0: torch.Tensor):
        st = super().prepare(mol, rho0)
        if st.ks.kxc is None or st.ks.kxc.shape[-1] != self.w.shape[-1]:
            have = None if st.ks.kxc is None else st.ks.kxc.shape[-1]
            raise ValueError(f"the ridge xc map has {self.w.shape[-1]} pair coordinates; the batch's dense kernel "
                             f"has {have} (another molecule, basis or spin channel count?)")
        w = self.w[None].to(st.ks.kxc.device)  # [1, S·M, S·M]
        st.ks = replace(st.ks, kxc=st.ks.kxc + w if self.anchor else w)
        return st
