"""Rotation equivariance at float64 (and the surrogate at float32, its training dtype) of the geometry encoder, the field encoder and the whole surrogate (every head,
s/p/d shells; the Kohn–Sham head with its exact terms rotated exactly): rotate the molecule, the field and the initial ρ (Wigner-D per shell) — the predicted trajectory
must be the rotated one."""

import numpy as np
import pytest
import torch
from model_inputs import guess_inputs, with_kohn_sham

from rtml.datasets.xc_kernel import compress, expand, pack, unpack
from rtml.models.dtype import building
from rtml.models.equivariance import equivariance_error, random_rotation, rotate_irreps
from rtml.models.field_encoder import FIELD_PRESETS, FieldEncoder
from rtml.models.geometry_encoder import GEOMETRY_PRESETS, GeometryEncoder
from rtml.models.inputs import MoleculeBatch
from rtml.models.irreps import ao_rotation, shell_l_of
from rtml.models.surrogate import Surrogate, preset

TOL = 1e-10


def test_geometry_encoder_equivariant():
    torch.manual_seed(0)
    with building(torch.float64):
        enc = GeometryEncoder(GEOMETRY_PRESETS["debug"])
    z = torch.tensor([8, 1, 1, 6, 1])
    pos = torch.randn(5, 3, dtype=torch.float64) * 2
    batch = torch.tensor([0, 0, 0, 1, 1])
    err = equivariance_error(enc, (z, pos, batch), lambda a, R: (a[0], a[1] @ R.T, a[2]),
                             lambda y, R: rotate_irreps(y, enc.irreps_out, R), random_rotation(1))
    assert err < TOL


def test_field_encoder_equivariant_and_linear():
    torch.manual_seed(0)
    irreps_geo = GEOMETRY_PRESETS["debug"].irreps_hidden
    with building(torch.float64):
        enc = FieldEncoder(irreps_geo, FIELD_PRESETS["debug"])
    geo = torch.randn(4, enc.irreps_in1.dim, dtype=torch.float64)
    e = torch.randn(3, dtype=torch.float64) * 1e-2
    err = equivariance_error(enc, (geo, e), lambda a, R: (rotate_irreps(a[0], irreps_geo, R), a[1] @ R.T),
                             lambda y, R: rotate_irreps(y, enc.irreps_out, R), random_rotation(2))
    assert err < TOL
    assert torch.allclose(enc(geo, 2 * e), 2 * enc(geo, e), atol=1e-14)
    assert enc(geo, torch.zeros(3, dtype=torch.float64)).abs().max() == 0


def _rotate_ks(ks, W, R):
    """Exact rotation of the AO Kohn–Sham terms: M -> W M Wᵀ, and the vector operator r_x -> Σ_y R_xy W r_y Wᵀ."""
    from rtml.datasets.kohn_sham import KohnShamBatch

    rot = lambda m: W.to(m.dtype).unsqueeze(1) @ m @ W.to(m.dtype).mT.unsqueeze(1)
    # the kernel is in the Löwdin basis, whose operators rotate with the same W (X -> W X Wᵀ): rotate it densely
    n = W.shape[-1]
    ww = torch.einsum("bmk,bnl->bmnkl", W, W).flatten(-2).flatten(1, 2)[:, None, None]  # W ⊗ W [B, 1, 1, N², N²]
    full = torch.from_numpy(expand(ks.xc_kernel.permute(0, 1, 3, 2, 4).numpy(), n))  # [B, S, S, N², N²]
    rotated = (ww @ full @ ww.mT).numpy()
    kernel = torch.from_numpy(np.stack([[[compress(rotated[b, s, t], n)[0] for t in range(rotated.shape[2])]
                                         for s in range(rotated.shape[1])] for b in range(len(rotated))]))
    kernel = kernel.permute(0, 1, 3, 2, 4).contiguous()  # [B, S, M, S, M]
    return KohnShamBatch(overlap=W @ ks.overlap @ W.mT, hcore=W @ ks.hcore @ W.mT,
                         r_ints=torch.einsum("xy,byij->bxij", R, rot(ks.r_ints)), j_factor=pack(rot(unpack(ks.j_factor, n))),
                         vxc0=rot(ks.vxc0), rho_gs=rot(ks.rho_gs), xc_kernel=kernel)


def _rotate_batch(mol: MoleculeBatch, rho, field, R):
    Ws = []
    for b in range(mol.batch_size):
        n = int(mol.basis_mask[b].sum())
        sl = shell_l_of(mol.basis_l[b, :n].numpy(), mol.basis_m[b, :n].numpy(), mol.basis_atom[b, :n].numpy())
        W = torch.eye(mol.nbf, dtype=torch.float64)
        W[:n, :n] = ao_rotation(R, sl)
        Ws.append(W)
    W = torch.stack(Ws)  # [B, N, N]
    ks = _rotate_ks(mol.ks, W, R)
    mol2 = MoleculeBatch(**{**mol.__dict__, "positions": mol.positions @ R.T, "overlap": W @ mol.overlap @ W.mT,
                            "ks": ks})
    Wc = W.to(rho.dtype)[:, None, None]
    return mol2, Wc @ rho @ Wc.mT, field @ R.T, Wc


@pytest.mark.parametrize("anchor, saturation", [("frozen", None), ("linear", None), ("linear", 0.05)])
def test_surrogate_equivariant(anchor, saturation):
    torch.manual_seed(0)
    names = [("h2o", "6-31g*"), ("nh3", "sto-3g")]
    mol, rho0 = guess_inputs(names, seed=1)  # s, p and d shells
    mol = with_kohn_sham(mol, rho0, names)
    T = 4
    g = torch.Generator().manual_seed(3)
    rho = torch.stack([rho0 + 1e-3 * t * (rho0 @ rho0) for t in range(T + 1)], dim=1)  # [B, T+1, 2, N, N]
    field = 1e-2 * torch.randn(2, T + 1, 3, generator=g, dtype=torch.float64)
    cfg = preset("debug", bundle=2, xc_anchor=anchor)
    cfg.codec.delta_saturation = saturation  # the soft Δρ encoding divides by a rotation invariant
    model = Surrogate(cfg, dtype=torch.float64)
    for p in list(model.decoder.static_w.parameters()) + list(model.coef.parameters()):
        torch.nn.init.normal_(p, std=0.1)  # non-trivial output (the decoder and c_θ start at zero)
    R = random_rotation(4)
    pred = model(mol, rho, field, 0.2)
    mol2, rho2, field2, Wc = _rotate_batch(mol, rho, field, R)
    pred2 = model(mol2, rho2, field2, 0.2)
    change = (pred - rho[:, 1:]).abs().max()
    assert change > 1e-4  # the test is not trivially satisfied by an identity map
    assert (Wc @ pred @ Wc.mT - pred2).abs().max() < TOL


def test_surrogate_equivariant_in_float32():
    """The same check with the network in float32, the dtype it trains in (the exact terms and the state stay
    float64/complex128): the rotated trajectory agrees to float32 rounding — below 1e-5 of what the learned term moves
    ρ by beyond the anchor (measured 2.7e-7; a broken equivariance is off by the size of that move)."""
    torch.manual_seed(0)
    names = [("h2o", "6-31g*"), ("nh3", "sto-3g")]
    mol, rho0 = guess_inputs(names, seed=1)
    mol = with_kohn_sham(mol, rho0, names)
    T = 4
    g = torch.Generator().manual_seed(3)
    rho = torch.stack([rho0 + 1e-3 * t * (rho0 @ rho0) for t in range(T + 1)], dim=1)  # [B, T+1, 2, N, N]
    field = 1e-2 * torch.randn(2, T + 1, 3, generator=g, dtype=torch.float64)
    model = Surrogate(preset("debug", bundle=2, xc_anchor="linear"), dtype=torch.float32)
    for p in list(model.decoder.static_w.parameters()) + list(model.coef.parameters()):
        torch.nn.init.normal_(p, std=0.1)
    R = random_rotation(4)
    pred = model(mol, rho, field, 0.2)
    mol2, rho2, field2, Wc = _rotate_batch(mol, rho, field, R)
    pred2 = model(mol2, rho2, field2, 0.2)
    learned = (pred - Surrogate(preset("debug", bundle=2, xc_anchor="linear"), dtype=torch.float32)(
        mol, rho, field, 0.2)).abs().max()  # what the learned term moves ρ by, beyond the anchor
    err = (Wc @ pred @ Wc.mT - pred2).abs().max()
    print(f"float32: rotation error {err:.2e}, learned change {learned:.2e}")
    assert learned > 1e-6
    assert err < 1e-5 * learned, (err, learned)
