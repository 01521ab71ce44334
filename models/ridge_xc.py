"""The simplest few-shot learner there is: a per-molecule linear map ρ − ρ(0) → V_xc − V_xc(0), fitted by ridge
regression on the support trajectories' recorded V_xc and used inside the exact linear-xc propagator in place of
the adiabatic kernel at ρ(0).

The map lives where the kernel does (:mod:`rtml.datasets.xc_kernel`): the Löwdin basis of each support geometry,
pair coordinates (features d(Re δP) [S·M], targets the upper triangle of Re δV [S·M], M = N(N+1)/2), so
:class:`RidgeXC` is :class:`rtml.models.baselines.LinearXC` with its ``sym`` kernel replaced. Fitting on frames of
moderate and strong fields lets it absorb what the linear kernel misses on average (it stays linear in δP). The
exact-exchange part on Im ρ (hybrids) is kept from the exact kernel: the recorded V_xc's imaginary part is exact
exchange, which the kernel already has exactly. Dense pair coordinates: N ≤ ``MAX_NBF`` functions.

The regularisation strength is chosen by scikit-learn's efficient leave-one-out (``RidgeCV``, generalised
cross-validation) over ``ALPHAS`` relative to the features' mean squared norm.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from sklearn.linear_model import RidgeCV

from rtml.datasets.xc_kernel import DENSE_MAX_NBF, pack, sym_coords
from rtml.models.baselines import FrozenXCConfig, LinearXC
from rtml.models.inputs import MoleculeBatch

MAX_NBF = DENSE_MAX_NBF  # the map is dense in pair coordinates, [S·M]² float64
ALPHAS = tuple(10.0 ** np.arange(-8, 1))  # × mean ‖d‖² of the support frames


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


def fit_ridge_xc(trajectories: list, sources: list[str] | None = None) -> tuple[np.ndarray, float]:
    """Ridge map W [S·M, S·M] float64 (δV = W d) from support trajectories of one molecule (any geometries, same
    basis); -> (W, the chosen regularisation strength α)."""
    if not trajectories:
        raise ValueError("the ridge xc map needs at least one support trajectory")
    sources = sources or [f"support[{i}]" for i in range(len(trajectories))]
    nbf = {t.nbf for t in trajectories}
    if len(nbf) != 1 or next(iter(nbf)) > MAX_NBF:
        raise ValueError(f"{sources[0]}: the ridge xc map needs one basis size ≤ {MAX_NBF} functions, got {sorted(nbf)}")
    pairs = [support_pairs(t, s) for t, s in zip(trajectories, sources)]
    d = np.concatenate([p[0] for p in pairs])  # [F, S·M]
    v = np.concatenate([p[1] for p in pairs])  # [F, S·M]
    scale = float(np.mean(np.sum(d ** 2, axis=1))) or 1.0
    ridge = RidgeCV(alphas=[a * scale for a in ALPHAS], fit_intercept=False).fit(d, v)
    return np.asarray(ridge.coef_, dtype=np.float64), float(ridge.alpha_) / scale


class RidgeXC(LinearXC):
    """Linear xc with the fitted map ``w`` [S·M, S·M] in place of the exact kernel's ``sym`` part (module
    docstring); every other term (h, J, V_xc(ρ0), exact exchange on Im ρ, the field) is the exact one."""

    def __init__(self, w: np.ndarray, cfg: FrozenXCConfig | None = None):
        super().__init__(cfg)
        self.register_buffer("w", torch.as_tensor(np.asarray(w), dtype=torch.float64))

    def prepare(self, mol: MoleculeBatch, rho0: torch.Tensor):
        st = super().prepare(mol, rho0)
        if st.ks.kxc is None or st.ks.kxc.shape[-1] != self.w.shape[-1]:
            have = None if st.ks.kxc is None else st.ks.kxc.shape[-1]
            raise ValueError(f"the ridge xc map has {self.w.shape[-1]} pair coordinates; the batch's dense kernel "
                             f"has {have} (another molecule, basis or spin channel count?)")
        st.ks = replace(st.ks, kxc=self.w[None].to(st.ks.kxc.device))
        return st
