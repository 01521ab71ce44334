"""The Kohn–Sham head's linear response made exact at any step: Magnus-2 plus the exact-minus-Magnus linear map.

Write ρ_o = ρ₀ + δ (Löwdin, spin-resolved). Linearised at the ground state, the linear-xc Kohn–Sham equation is

    δ̇ = L δ + E(t)·b,    L δ = -i[F₀, δ] - i[(J + K)[δ], ρ₀],    b_x = -i[r_x, ρ₀]

(F₀ = h + J[ρ₀] + V_xc[ρ₀], K the xc kernel at ρ₀): the linear-response (Casida) dynamics, whose eigenvalues are ±i
times the excitation energies. Its exact solution over a step h is e^{hL} δ + ∫₀ʰ e^{(h−s)L} E(t+s) ds·b, computed
from one eigendecomposition of L per geometry (φ-functions; the field is the quadratic through its values at the
step's ends and its mean over the step, for which the integral is exact).

A Magnus-2 step M(ρ_n, ρ_{n−1}, Ē) (:func:`rtml.models.kohn_sham.magnus_step`: unitary, any potential, the field
and every nonlinear term) is wrong at large steps mostly in exactly this linear part — the fast oscillation of ρ
feeding back through J and K inside one step. :class:`LinearResponse` replaces it:

    ρ_{n+1} = M(ρ_n, ρ_{n−1}, Ē) + [e^{hL} − A] δ_n − B δ_{n−1} + (exact source − S Ē)

where A, B, S are the Jacobians of the same Magnus step at the ground state (central differences, once per geometry
and step). Linearised, the corrected step *is* the exact linear-response propagator, at any h: weak fields have no
time-step error; strong fields keep Magnus's stable unitary treatment of the field and of the nonlinear terms (an
exponential Runge–Kutta integrator of the same split, ETDRK4 with the field term explicit, was tried first and blows
up at 0.05 a.u. already at h = 0.2: the fast core-level oscillations enter its explicit stages).

The correction is linear, not unitary: it leaves the state off the pure states (ρ² = ρ) at second order, 1e-3–1e-2
after 1,000 steps of strong fields; one McWeeny step 3ρ² − 2ρ³ after each corrected step puts it back (to first
order it only removes the occupied–occupied and virtual–virtual blocks, which a pure state's first-order change does
not have) and lowers the strong-field error (H2O at Δt = 1.6: dipole nRMSE 0.079 → 0.053). Hermiticity is kept
exactly (Hermitian coordinates), the trace to second order in the idempotency error. The dense Liouvillian has
n = 2N² real coordinates (N basis functions): refused above ``MAX_COORDS`` (N ≈ 45).
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch

from rtml.datasets.sized_cache import SizedLRU
from rtml.models.kohn_sham import KohnShamOperators, magnus_step
from rtml.models.local_xc import grid_kernel_operators

MAX_COORDS = 4096  # n = 2N² (N ≤ 45): one O(n³) eigendecomposition and n-column Jacobians per geometry
JACOBIAN_EPS = 1e-6  # central-difference step of the Magnus Jacobians (relative to ‖ρ₀‖ ≈ 1)


def commutator(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """-i[a, b] (spin axes broadcast)."""
    return -1j * (a @ b - b @ a)


class HermitianCoords:
    """Real coordinates of spin-resolved Hermitian matrices [*, 2, N, N]: per spin Re A on and above the diagonal,
    Im A above it — n = 2N² numbers."""

    def __init__(self, n: int, device=None):
        self.n = n
        i0, i1 = np.triu_indices(n)
        j0, j1 = np.triu_indices(n, 1)
        self.i0, self.i1 = torch.as_tensor(i0, device=device), torch.as_tensor(i1, device=device)
        self.j0, self.j1 = torch.as_tensor(j0, device=device), torch.as_tensor(j1, device=device)
        self.size = 2 * n * n

    def to_vec(self, a: torch.Tensor) -> torch.Tensor:
        """[*, 2, N, N] complex -> [*, 2N²] float64."""
        re = a.real[..., self.i0, self.i1]  # [*, 2, M]
        im = a.imag[..., self.j0, self.j1]  # [*, 2, M']
        return torch.cat([re, im], dim=-1).flatten(-2).to(torch.float64)

    def to_mat(self, v: torch.Tensor) -> torch.Tensor:
        """[*, 2N²] float64 -> [*, 2, N, N] complex128 Hermitian."""
        n, m = self.n, len(self.i0)
        v = v.unflatten(-1, (2, n * n))
        re = torch.zeros(*v.shape[:-1], n, n, dtype=torch.float64, device=v.device)
        re[..., self.i0, self.i1] = v[..., :m]
        re[..., self.i1, self.i0] = v[..., :m]
        im = torch.zeros_like(re)
        im[..., self.j0, self.j1] = v[..., m:]
        im[..., self.j1, self.j0] = -v[..., m:]
        return torch.complex(re, im)


def phi_functions(z: torch.Tensor, k_max: int = 3) -> list[torch.Tensor]:
    """[φ₀(z), …, φ_kmax(z)] element-wise for complex z: φ₀ = e^z, φ_k = (φ_{k-1}(z) − 1/(k−1)!)/z; a Taylor series
    where |z| < 1 (the recursion cancels there)."""
    out = [torch.exp(z)]
    small = z.abs() < 1.0
    zs = torch.where(small, torch.ones_like(z), z)
    for k in range(1, k_max + 1):
        direct = (out[-1] - 1.0 / math.factorial(k - 1)) / zs
        series = sum(z ** j / math.factorial(j + k) for j in range(18))
        out.append(torch.where(small, series, direct))
    return out


def linear_part(ops: KohnShamOperators, f0: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """L δ = -i[F₀, δ] - i[(J + K)[δ], ρ₀] for δ [*, B, 2, N, N] (Löwdin)."""
    return commutator(f0, d) + commutator(ops.coulomb(d) + ops.linear_xc(ops.rho_gs_o + d), ops.rho_gs_o)


def linear_xc_step(iterations: int):
    """The linear-xc Magnus step ``(ops, cur, prev, e_mean, h) -> next`` (:func:`magnus_step` with V_xc[ρ₀] +
    K[ρ − ρ₀]) with ``iterations`` corrector passes: what the linear-xc baseline and the linear-anchored Kohn–Sham
    head linearise to; its cache tag is :func:`linear_xc_tag`."""
    def step(ops: KohnShamOperators, cur, prev, e_mean, h):
        return magnus_step(ops, cur, (ops.vxc0_o, ops.linear_xc), e_mean, h, rho_prev_o=prev, iterations=iterations,
                           batched_terms=True)
    return step


def linear_xc_tag(iterations: int) -> str:
    return f"linear_xc/{iterations}"


def grid_kernel_step(iterations: int):
    """The Magnus step with V_xc[ρ₀] + the LDA kernel on the local term's grid, f_xc(n0)·δn
    (:mod:`rtml.models.local_xc`): what the exact grid LDA (``GridXC``) and the learned local term linearise to, for
    any θ — so their corrected steps are the exact linear-response propagator too. Cache tag: :func:`grid_kernel_tag`."""
    def step(ops: KohnShamOperators, cur, prev, e_mean, h):
        dense = grid_kernel_operators(ops)
        return magnus_step(dense, cur, (dense.vxc0_o, dense.linear_xc), e_mean, h, rho_prev_o=prev,
                           iterations=iterations, batched_terms=True)
    return step


def grid_kernel_tag(iterations: int) -> str:
    return f"grid_kernel/{iterations}"


def exact_response(ops: KohnShamOperators, iterations: int, on_grid: bool) -> LinearResponse:
    """The correction of a step with ``iterations`` corrector passes whose xc response is linear xc's kernel
    (``on_grid=False``) or the local term's grid kernel (``on_grid=True``: the grid LDA and the learned local term)."""
    if on_grid:
        return LinearResponse(ops, grid_kernel_step(iterations), grid_kernel_tag(iterations))
    return LinearResponse(ops, linear_xc_step(iterations), linear_xc_tag(iterations))


def field_nodes(e0: torch.Tensor, mean: torch.Tensor, e1: torch.Tensor) -> torch.Tensor:
    """Field [*, B, 3] at t, t+h/2, t+h -> [*, B, 3 nodes, 3]: the quadratic through its ends with the given mean."""
    return torch.stack([e0, 0.25 * (6.0 * mean - e0 - e1), e1], dim=-2)


def _digest(ops: KohnShamOperators, tag: str, h: float) -> str:
    """Key of one member's correction: its ground state, Kohn–Sham matrix pieces and kernel, the step and ``tag``."""
    d = hashlib.sha1(f"{tag}|{h:.12g}".encode())
    for t in (ops.h_o, ops.rho_gs_o, ops.vxc0_o, ops.x, ops.l_o, ops.kxc, ops.kxc_anti, ops.xc_points, ops.xc_weights,
              ops.xc_hybrid, ops.grid_weights, ops.grid_kernel0):
        if t is not None:
            d.update(t.detach().cpu().contiguous().numpy().tobytes())
    return d.hexdigest()


CACHE_MB = 512  # per process: ~1.9 MB per H2O/6-31G geometry and step (2·(2N²)² float64)
_cache = SizedLRU(CACHE_MB, lambda mats: sum(m.element_size() * m.nelement() for m in mats.values()))


def member_matrices(ops: KohnShamOperators, step_fn, h: float, tag: str) -> dict[str, torch.Tensor]:
    """The correction of one geometry (``ops`` of batch 1) for steps of h (a.u.), cached by content: ``cur`` =
    e^{hL} − A, ``prev`` = −B [1, n, n], ``src`` [1, n, 9] (exact source integral at the 3 field nodes) and ``mean``
    = −S [1, n, 3] (module docstring). ``step_fn(ops, cur, prev, e_mean, h)`` is the Magnus step being corrected;
    ``tag`` names it in the cache key."""
    key = _digest(ops, tag, h)
    hit = _cache.get(key)
    if hit is not None:
        return hit
    if not ops.has_kernel:
        raise ValueError("the exact linear response needs the xc kernel at ρ(0) (KohnShamBatch.xc_kernel)")
    n_bf = ops.h_o.shape[-1]
    c = HermitianCoords(n_bf, device=ops.h_o.device)
    if c.size > MAX_COORDS:
        raise ValueError(f"exact linear response: {n_bf} basis functions give a {c.size}-dimensional dense "
                         f"Liouvillian (> MAX_COORDS={MAX_COORDS}); use the plain Magnus step at this size")
    with torch.no_grad():
        rho0 = ops.rho_gs_o  # [1, 2, N, N]
        f0 = ops.h_o.unsqueeze(-3) + ops.coulomb(rho0) + ops.vxc0_o  # [1, 2, N, N]
        eye = torch.eye(c.size, dtype=torch.float64, device=rho0.device)
        basis = c.to_mat(eye)[:, None]  # [n, 1, 2, N, N]
        lmat = c.to_vec(linear_part(ops, f0, basis)).permute(1, 2, 0)  # [1, n, n]: column j = L e_j
        lam, vecs = torch.linalg.eig(lmat)
        vecs_inv = torch.linalg.inv(vecs)
        err = float((vecs @ (lam[..., None] * vecs_inv) - lmat).abs().max() / lmat.abs().max())
        if err > 1e-8:
            raise ValueError(f"exact linear response: the Liouvillian's eigendecomposition is inaccurate "
                             f"(relative reconstruction error {err:.1e} > 1e-8)")

        def real(d):  # V diag(d) V⁻¹: real up to rounding (L is real)
            return (vecs @ (d[..., None] * vecs_inv)).real

        e, p1, p2, p3 = phi_functions(h * lam, 3)
        source = c.to_vec(commutator(ops.r_o.unsqueeze(-3), rho0.unsqueeze(-4))).mT  # [1, n, 3]: b_x
        weights = [h * real(p1 - 3 * p2 + 4 * p3), 4 * h * real(p2 - 2 * p3), h * real(4 * p3 - p2)]  # per node
        src = torch.stack([w @ source for w in weights], dim=-2)  # [1, n, 3 nodes, 3]

        eps, r = JACOBIAN_EPS, rho0.expand(c.size, *rho0.shape)  # central differences at the ground state
        pert = c.to_mat(eps * eye)[:, None]  # [n, 1, 2, N, N]
        zero = torch.zeros(c.size, 1, 3, dtype=torch.float64, device=rho0.device)

        def diff(args_p, args_m):  # -> [1, n_out, m] (columns = inputs)
            d = c.to_vec(step_fn(ops, *args_p, h)) - c.to_vec(step_fn(ops, *args_m, h))  # [m, 1, n]
            return (d / (2 * eps)).permute(1, 2, 0)

        a = diff((r + pert, r, zero), (r - pert, r, zero))
        b = diff((r, r + pert, zero), (r, r - pert, zero))
        r3, e3 = rho0.expand(3, *rho0.shape), eps * torch.eye(3, dtype=torch.float64, device=rho0.device)[:, None]
        s = diff((r3, r3, e3), (r3, r3, -e3))
    mats = {"cur": (real(e) - a).contiguous(), "prev": (-b).contiguous(), "src": src.flatten(-2).contiguous(),
            "mean": (-s).contiguous()}
    _cache.put(key, mats)
    return mats


class LinearResponse:
    """The correction for a batch (``ops``), matrices per step length built on first use: one geometry shared by
    the whole batch (a Coulomb factor of leading dimension 1: many fields on one molecule) is linearised once."""

    def __init__(self, ops: KohnShamOperators, step_fn, tag: str):
        self.ops, self.step_fn, self.tag, self._mats = ops, step_fn, tag, {}
        self.coords = HermitianCoords(ops.h_o.shape[-1], device=ops.h_o.device)

    def matrices(self, h: float) -> dict[str, torch.Tensor]:
        key = round(float(h), 12)
        if key not in self._mats:
            nb = self.ops.h_o.shape[0]
            shared = self.ops.l_o.shape[0] == 1 and nb > 1
            per = [member_matrices(self.ops.select(i), self.step_fn, h, self.tag) for i in range(1 if shared else nb)]
            self._mats[key] = {k: torch.cat([p[k] for p in per]) for k in per[0]}
        return self._mats[key]

    def correct(self, nxt: torch.Tensor, cur: torch.Tensor, prev: torch.Tensor, nodes: torch.Tensor,
                h: float) -> torch.Tensor:
        """The corrected step: ``nxt`` the Magnus step's result from ``cur``, ``prev`` [*, B, 2, N, N] complex128;
        ``nodes`` [*, B, 3, 3] the field at t, t+h/2, t+h (its mean over the step = (n₀ + 4n½ + n₁)/6)."""
        m, c, rho0 = self.matrices(h), self.coords, self.ops.rho_gs_o
        nodes = nodes.to(torch.float64)
        mean = (nodes[..., 0, :] + 4 * nodes[..., 1, :] + nodes[..., 2, :]) / 6.0  # [*, B, 3]
        corr = (m["cur"] @ c.to_vec(cur - rho0).unsqueeze(-1) + m["prev"] @ c.to_vec(prev - rho0).unsqueeze(-1)
                + m["src"] @ nodes.flatten(-2).unsqueeze(-1) + m["mean"] @ mean.unsqueeze(-1)).squeeze(-1)  # [*, B, n]
        out = nxt + c.to_mat(corr)  # [*, B, 2, N, N]
        sq = out @ out  # one McWeeny step 3ρ² − 2ρ³: back onto the pure states the correction leaves at 2nd order
        return 3.0 * sq - 2.0 * sq @ out
