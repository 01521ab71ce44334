"""The rtml surrogate: ρ(t) -> ρ(t+Δt) for any molecule and basis, driven by E(t). One parameter set for all nbf.

Pipeline of one model step (bundle of k sub-steps), all in the Löwdin basis, all exactly rotation-equivariant:

1. static, once per trajectory (:meth:`Surrogate.prepare`): geometry encoder -> atom irreps g_a; shell-pair
   embeddings; the decoder's static per-pair weights; S^±½; N_σ = tr ρ_σ(t0); open-shell flag.
2. encode: ρ(t) and Δρ(t) = ρ(t) - ρ(t-k) -> pair irreps -> atom irreps d_a; E_mid = (E(t) + E(t+1))/2 -> field
   irreps f_a = TP(g_a, E); invariants (scalars, norms, d_a·f_a) -> one token per atom [d_model].
3. dynamics: Mamba + FiLM(geometry scalars) over time per atom, with the Hamiltonian residual (rtml.models.dynamics).
4. decode: latent of both atoms gates the equivariant sources of every shell-pair block -> k Hermitian matrices.
5. Kohn–Sham head: the matrices are the learned xc potential: V_θ = V_xc[ρ(0)] + v_scale·M_j (+ c_θ ∘ K_xc[ρ − ρ(0)]),
   and ρ_o <- Magnus-2 step with H = h + J[ρ] + E(t)·r + V_θ (:mod:`rtml.models.kohn_sham`: exact h, J, r from
   PySCF in float64, state complex128). Decoder output 0 (initialisation) is the frozen-xc propagator exactly (with
   ``xc_anchor='linear'``: the linear-xc propagator, V_xc[ρ(0)] + K_xc[ρ − ρ(0)]). The encoder's Δρ channel is
   ρ(t) − ρ(0) (the deviation from the ground state that V_xc responds to). Hermiticity, trace and idempotency are
   exact (unitary steps). The earlier ``unitary`` (learned effective Hamiltonian) and ``density`` (learned
   increments) heads were retired: their rollouts diverged (held-out dipole nRMSE ~1400 vs 0.24, docs/model.md).
Closed-shell inputs stay closed-shell exactly (the α−β output channels are masked).
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Literal

import torch
from e3nn import o3
from torch import nn

from rtml.models.density_codec import (
    CODEC_PRESETS,
    BlockDecoder,
    DensityCodecConfig,
    DensityEncoder,
    PairEmbedding,
    irrep_mul,
    spin_channels,
    split_irreps,
    to_pair_irreps,
)
from rtml.models.dtype import building
from rtml.models.dynamics import DYNAMICS_PRESETS, Dynamics, DynamicsConfig
from rtml.models.field_encoder import FIELD_PRESETS, FieldEncoder, FieldEncoderConfig
from rtml.models.geometry_encoder import GEOMETRY_PRESETS, GeometryEncoder, GeometryEncoderConfig
from rtml.models.inputs import MoleculeBatch
from rtml.models.kohn_sham import KohnShamOperators
from rtml.models.kohn_sham_head import head_potential, head_steps
from rtml.models.layout import BasisLayout, build_layout
from rtml.models.linear_response import LinearResponse, exact_response
from rtml.models.local_xc import LocalXC, LocalXCConfig
from rtml.models.physics import lowdin, sandwich, spin_traces

XcAnchor = Literal["frozen", "linear"]
XC_ANCHORS = typing.get_args(XcAnchor)


@dataclass(kw_only=True)
class SurrogateConfig:
    geometry: GeometryEncoderConfig = dc_field(default_factory=GeometryEncoderConfig)
    field: FieldEncoderConfig = dc_field(default_factory=FieldEncoderConfig)
    codec: DensityCodecConfig = dc_field(default_factory=DensityCodecConfig)
    dynamics: DynamicsConfig = dc_field(default_factory=DynamicsConfig)
    bundle: int = 1  # sub-steps predicted per model call (temporal bundling)
    stride: int = 1  # data frames per model step: the model advances Δt = stride·dt of its training data
    v_scale: float = 0.01  # Hartree per unit decoder output (V_θ = V_xc[ρ(0)] + v_scale·M)
    ks_iterations: int = 1  # corrector passes of the Kohn–Sham head's midpoint (rtml.models.kohn_sham)
    linear_xc_source: bool = True  # add c_θ ∘ K_xc[ρ − ρ(0)] (exact xc kernel at ρ(0))
    xc_anchor: XcAnchor = "linear"  # what the untrained model is: linear xc (c_θ = 1, learned terms O(Δρ²)) | frozen xc
    # 'exact': each Magnus step of the head corrected so that its linear response is the exact linear-response
    # propagator at any step (rtml.models.linear_response; the xc kernel, the linear anchor, 2N² <= 4096)
    linear_response: Literal["magnus", "exact"] = "magnus"
    # the learned local xc term: u_θ(n) on a real-space grid, O(Δρ²) (rtml.models.local_xc)
    local_xc: LocalXCConfig = dc_field(default_factory=LocalXCConfig)
    # False: no encoder/dynamics/decoder at all — the model is the Kohn–Sham head with the learned local term only
    network: bool = True

    def __post_init__(self):
        if self.bundle < 1:
            raise ValueError(f"model.bundle: expected an integer >= 1, got {self.bundle}")
        if self.stride < 1:
            raise ValueError(f"model.stride: expected an integer >= 1, got {self.stride}")
        if self.xc_anchor not in XC_ANCHORS:
            raise ValueError(f"model.xc_anchor: expected one of {XC_ANCHORS}, got {self.xc_anchor!r}")
        if self.linear_response not in ("magnus", "exact"):
            raise ValueError(f"model.linear_response: expected 'magnus' or 'exact', got {self.linear_response!r}")
        if self.linear_response == "exact" and self.xc_anchor != "linear":
            raise ValueError("model.linear_response='exact' needs model.xc_anchor='linear' (the exact linear response "
                             "is linear xc's)")
        if self.local_xc.enabled and self.xc_anchor != "linear":
            raise ValueError("model.local_xc.enabled needs model.xc_anchor='linear' (the local term is the grid "
                             "kernel plus an O(Δρ²) remainder)")
        if not self.network and not self.local_xc.enabled:
            raise ValueError("model.network=false needs model.local_xc.enabled=true (without either the model is the "
                             "linear-xc baseline: rtml evaluate rolls it out)")
        if self.xc_anchor == "linear" and not self.linear_xc_source:
            raise ValueError("model.xc_anchor='linear' needs model.linear_xc_source=true (the anchor is the exact "
                             "xc kernel term)")


def preset(name: str, **overrides) -> SurrogateConfig:
    """Named sizes: ``debug`` (tests, smoke runs), ``small`` (laptop), ``base`` (cluster)."""
    if name not in GEOMETRY_PRESETS:
        raise ValueError(f"model preset: expected one of {sorted(GEOMETRY_PRESETS)}, got {name!r}")
    cfg = SurrogateConfig(geometry=copy.deepcopy(GEOMETRY_PRESETS[name]), field=copy.deepcopy(FIELD_PRESETS[name]),
                          codec=copy.deepcopy(CODEC_PRESETS[name]), dynamics=copy.deepcopy(DYNAMICS_PRESETS[name]))
    known = {f.name for f in dataclasses.fields(SurrogateConfig)}
    for k, v in overrides.items():
        if k not in known:
            raise ValueError(f"model preset {name!r}: unknown field {k!r}; expected one of {sorted(known)}")
        setattr(cfg, k, v)
    cfg.__post_init__()
    return cfg


@dataclass
class Static:
    """Per-trajectory constants produced by :meth:`Surrogate.prepare`."""
    mol: MoleculeBatch
    layout: BasisLayout
    s_half: torch.Tensor  # [B, N, N]
    geo: dict  # {(L,p): [B*A, mul, 2L+1]}
    geo_flat: torch.Tensor  # [B*A, irreps_geo.dim]
    cond: torch.Tensor  # [B*A, d_cond] FiLM conditioning
    pair_emb: list  # per pair group [P, d_pair]
    static_w: list
    n_sigma: torch.Tensor  # [B, 2] electrons per spin
    spin_mask: torch.Tensor  # [B] 1.0 for open-shell molecules, 0.0 for closed-shell
    atom_ao: torch.Tensor  # [B, N] flattened atom index of each AO (0 on padding)
    ks: KohnShamOperators  # exact Kohn–Sham terms
    lr: LinearResponse | None = None  # the exact-linear-response correction (model.linear_response='exact')


class Surrogate(nn.Module):
    """The model; ``dtype`` float32 (training) or float64 (exact-equivariance checks), see rtml.models.dtype."""

    def __init__(self, cfg: SurrogateConfig, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.cfg = cfg
        with building(dtype):
            self._build(cfg)
        self.to(dtype)

    def _build(self, cfg: SurrogateConfig):
        self.geometry = GeometryEncoder(cfg.geometry)
        g_irreps = self.geometry.irreps_out
        self.field = FieldEncoder(g_irreps, cfg.field)
        f_irreps = self.field.irreps_out
        n0 = irrep_mul(g_irreps, 0, "e")
        self.pairs = PairEmbedding(cfg.codec, n0)
        self.encoder = DensityEncoder(cfg.codec)
        mul = cfg.codec.mul
        self.dot_keys = [(L, p) for L, p in self.encoder.keys if irrep_mul(f_irreps, L, p)]
        self.field_to_mul = nn.ModuleDict({f"{L}{p}": o3.Linear(o3.Irreps(f"{irrep_mul(f_irreps, L, p)}x{L}{p}"),
                                                                o3.Irreps(f"{mul}x{L}{p}"))
                                           for L, p in self.dot_keys})
        n_tok = self.encoder.n_invariants + len(self.dot_keys) * mul + irrep_mul(f_irreps, 0, "e")
        d = cfg.dynamics.d_model
        self.tokenizer = nn.Sequential(nn.Linear(n_tok, d), nn.SiLU(), nn.Linear(d, d))
        self.generators = nn.Linear(irrep_mul(f_irreps, 0, "e"), cfg.dynamics.n_generators, bias=False)
        self.dynamics = Dynamics(cfg.dynamics, 2 * n0)
        self.decoder = BlockDecoder(cfg.codec, d, n_out=4 * cfg.bundle)
        self.coef = nn.Linear(d, 1)
        nn.init.zeros_(self.coef.weight)
        nn.init.zeros_(self.coef.bias)
        self.local_xc = LocalXC(cfg.local_xc) if cfg.local_xc.enabled else None

    # ------------------------------------------------------------------ static
    def prepare(self, mol: MoleculeBatch, rho0: torch.Tensor) -> Static:
        """mol (bohr), rho0 [B, 2, N, N] AO density at the first input time -> :class:`Static`."""
        dtype = self.coef.weight.dtype
        mol = mol.to(device=self.coef.weight.device, dtype=dtype)
        layout = build_layout(mol, dtype).to(device=mol.overlap.device)
        B, A = layout.B, layout.A
        s_half, _ = lowdin(mol.overlap)
        pos = mol.positions.reshape(B * A, 3)
        batch = torch.arange(B, device=pos.device).repeat_interleave(A)
        amask = mol.atom_mask.reshape(-1)
        geo_flat = pos.new_zeros(B * A, self.geometry.irreps_out.dim)
        geo_flat[amask] = self.geometry(mol.atomic_numbers.reshape(-1)[amask], pos[amask], batch[amask])
        geo = split_irreps(geo_flat, self.geometry.irreps_out)
        scal = geo[(0, "e")][..., 0]  # [B*A, n0]
        mean = (scal.reshape(B, A, -1) * mol.atom_mask[..., None]).sum(1) / mol.atom_mask.sum(1, keepdim=True)
        cond = torch.cat([scal, mean.repeat_interleave(A, dim=0)], dim=-1)
        pair_emb = self.pairs(layout, pos, scal)
        rho0 = rho0.to(s_half.device, dtype=torch.complex128 if dtype == torch.float64 else torch.complex64)
        rho0_o = sandwich(s_half, rho0)
        spin_mask = ((rho0[:, 0] - rho0[:, 1]).abs().amax(dim=(-1, -2)) > 1e-10).to(dtype)
        atom_ao = (mol.basis_atom.clamp_min(0) + torch.arange(B, device=pos.device)[:, None] * A)
        if mol.ks is None:
            raise ValueError("the surrogate needs the exact Kohn–Sham terms of every molecule (MoleculeBatch.ks: h, "
                             "r, the J factor and V_xc[ρ(0)]; built by the window reader and "
                             "MoleculeBatch.from_trajectories(kohn_sham=True))")
        ks = KohnShamOperators.from_batch(mol.ks)
        lr = None
        if self.cfg.linear_response == "exact":  # corrected against the step the head takes, linearised
            lr = exact_response(ks, self.cfg.ks_iterations, on_grid=self.local_xc is not None)
        return Static(ks=ks, lr=lr, mol=mol, layout=layout, s_half=s_half, geo=geo, geo_flat=geo_flat, cond=cond,
                      pair_emb=pair_emb, static_w=self.decoder.static_weights(layout, pair_emb), n_sigma=spin_traces(rho0_o),
                      spin_mask=spin_mask, atom_ao=atom_ao)

    @property
    def state_dtype(self) -> torch.dtype:
        """Complex dtype of the propagated state: complex128 (the exact terms are float64) whatever the network's."""
        return torch.complex128

    # ------------------------------------------------------------------ pieces
    def _encode(self, st: Static, rho_o, drho_o, e_mid):
        """rho_o, drho_o [*, B, 2, N, N]; e_mid [*, B, 3] -> tokens [*, B*A, d], phi [*, B*A, G], cache.
        The Δρ channel is ρ_o − ρ_o(0) (``drho_o`` is not used)."""
        A = st.layout.A
        drho_o = rho_o - st.ks.rho_gs_o
        delta = self.cfg.codec.delta_scale * spin_channels(drho_o)
        if self.cfg.codec.delta_saturation is not None:  # soft encoding: strong fields do not swamp the encoder
            size = (drho_o.real.square() + drho_o.imag.square()).sum((-1, -2, -3)).sqrt()  # [*, B]
            delta = delta / (1.0 + size / self.cfg.codec.delta_saturation).to(delta.real.dtype)[..., None, :, None,
                                                                                              None]
        chans = torch.cat([spin_channels(rho_o), delta], dim=-4)
        chans = chans.to(self.coef.weight.dtype)
        e_mid = e_mid.to(self.coef.weight.dtype)
        pair_irr = to_pair_irreps(st.layout, chans)  # per group [*, P, 8, D]
        atoms = self.encoder(st.layout, pair_irr, st.pair_emb)
        e_atoms = e_mid.repeat_interleave(A, dim=-2)  # [*, B*A, 3]
        f_flat = self.field(st.geo_flat.expand(*e_atoms.shape[:-1], -1), e_atoms)
        f_atoms = split_irreps(f_flat, self.field.irreps_out)
        dots = [(atoms[k] * self.field_to_mul[f"{k[0]}{k[1]}"](
            f_atoms[k].flatten(-2).contiguous()).reshape(atoms[k].shape)).sum(-1) for k in self.dot_keys]
        f_scal = f_atoms[(0, "e")][..., 0]
        tokens = self.tokenizer(torch.cat([self.encoder.invariants(atoms), *dots, f_scal], dim=-1))
        return tokens, self.generators(f_scal), (pair_irr, atoms, f_atoms)

    def _decode_and_step(self, st: Static, latent, cache, rho_o, drho_o, e_sub, dt, nodes=None):
        """latent [*, B*A, d]; e_sub [*, k, B, 3] the field over each of the k sub-steps (its mean); ``nodes``
        [*, k, B, 3, 3] the field at each sub-step's start, mean and end (``linear_response='exact'``) -> states
        [*, k, B, 2, N, N]."""
        pair_irr, _, _ = cache
        k = self.cfg.bundle
        # V_θ − V_xc[ρ(0)] must vanish with Δρ: the decoder's sources are the Δρ pair irreps and the atom
        # features of Δρ alone (linear in Δρ), gated by the latent (any function of ρ, Δρ, E and history).
        n_rho = pair_irr[0].shape[-2] // 2  # channels: 4 of ρ, then 4 of Δρ
        keep = torch.zeros(pair_irr[0].shape[-2], dtype=pair_irr[0].dtype, device=pair_irr[0].device)
        keep[n_rho:] = 1.0
        atoms = self.encoder(st.layout, [x * keep[:, None] for x in pair_irr], st.pair_emb)  # of Δρ alone
        mats = self.decoder(st.layout, [x[..., n_rho:, :] for x in pair_irr], atoms, latent,
                            st.static_w)  # [*, 4k, B, N, N] real
        mats = mats.unflatten(-4, (k, 4))  # [*, k, 4, B, N, N]
        mask = st.spin_mask[:, None, None]
        sym = mats[..., 0, :, :, :] + 1j * mats[..., 1, :, :, :]
        dif = (mats[..., 2, :, :, :] + 1j * mats[..., 3, :, :, :]) * mask
        m = torch.stack([sym + dif, sym - dif], dim=-3)  # [*, k, B, 2, N, N]
        m = 0.5 * (m.real + m.real.mT) + 0.5j * (m.imag - m.imag.mT)  # Hermitian in the AO-ordered Löwdin basis
        return head_steps(self.cfg, self.coef, st, m, latent, rho_o, drho_o, e_sub, dt, nodes, self.local_xc)

    def _head_only(self, st: Static, rho_o, drho_o, e_sub, dt, nodes=None):
        """``model.network=false``: the head's steps with no decoder matrices (M = 0) and the learned local term."""
        k = self.cfg.bundle
        m = torch.zeros(*rho_o.shape[:-4], k, *rho_o.shape[-4:], dtype=torch.complex128,
                        device=rho_o.device)  # [*, k, B, 2, N, N]
        return head_steps(self.cfg, self.coef, st, m, None, rho_o, drho_o, e_sub, dt, nodes, self.local_xc)

    def potential(self, st: Static, m: torch.Tensor) -> torch.Tensor:
        return head_potential(self.cfg, st, m)

    # ------------------------------------------------------------------ public API
    def forward(self, mol: MoleculeBatch, rho: torch.Tensor, field: torch.Tensor, dt: float,
                rho_prev: torch.Tensor | None = None, return_potential: bool = False,
                field_mid: torch.Tensor | None = None):
        """Teacher-forced prediction over a window (training).

        rho [B, T+1, 2, N, N] AO (reference), field [B, T+1, 3] a.u. on the same grid, dt (a.u.) between frames;
        T divisible by ``bundle`` = k. Inputs are ρ(0), ρ(k), ...; each predicts the next k frames from the
        reference input. ``rho_prev`` [B, 2, N, N] = ρ(-k) gives the first Δρ (else zero). ``field_mid``
        [B, T, 3]: the field over each step (its mean over the step on a finer grid, for strided data; default the
        midpoint ½(E(t) + E(t+Δt)) of ``field``).
        Returns predictions [B, T, 2, N, N] of rho[:, 1:]; with ``return_potential`` also V_θ [B, T, 2, N, N]
        (Löwdin, complex128; the midpoint xc potential of each step)."""
        T1 = rho.shape[1]
        k, T = self.cfg.bundle, T1 - 1
        if T % k:
            raise ValueError(f"window length {T} is not a multiple of model.bundle={k}")
        st = self.prepare(mol, rho[:, 0])
        rho = rho.to(device=st.s_half.device, dtype=self.state_dtype)
        field = field.to(device=st.s_half.device, dtype=torch.float64)
        rho_o = self.to_orth(st, rho.transpose(0, 1))  # [T+1, B, 2, N, N]
        inp = rho_o[0:T:k]  # [n, B, 2, N, N]
        first = torch.zeros_like(inp[:1]) if rho_prev is None else (inp[:1] - self.to_orth(st, rho_prev)[None])
        drho = torch.cat([first, inp[1:] - inp[:-1]], dim=0)
        e_mid = (0.5 * (field[:, 1:] + field[:, :-1]) if field_mid is None else
                 field_mid.to(device=field.device, dtype=torch.float64)).transpose(0, 1)  # [T, B, 3]
        e_sub = e_mid.unflatten(0, (T // k, k))  # [n, k, B, 3]
        nodes = None
        if self.field_nodes:  # the field at each step's start, mean and end: [n, k, B, 3, 3]
            ends = field.transpose(0, 1)  # [T+1, B, 3]
            nodes = torch.stack([ends[:-1], e_mid, ends[1:]], dim=-2).unflatten(0, (T // k, k))
        if self.cfg.network:
            tokens, phi, cache = self._encode(st, inp, drho, e_sub[:, 0])
            latent, _ = self.dynamics(tokens.transpose(0, 1), st.cond, phi.transpose(0, 1))  # [B*A, n, d]
            pred_o, v = self._decode_and_step(st, latent.transpose(0, 1), cache, inp, drho, e_sub, dt,
                                              nodes)  # [n, k, B, 2, N, N]
        else:
            pred_o, v = self._head_only(st, inp, drho, e_sub, dt, nodes)
        pred = sandwich(self._s_inv_half(st), pred_o.flatten(0, 1)).transpose(0, 1)  # [B, T, 2, N, N]
        if return_potential:
            return pred, v.flatten(0, 1).transpose(0, 1)
        return pred

    def to_orth(self, st: Static, rho: torch.Tensor) -> torch.Tensor:
        """AO -> Löwdin density in the state dtype (float64 S^½)."""
        x = st.ks.x_inv
        return sandwich(x, rho.to(device=x.device, dtype=self.state_dtype))

    def from_orth(self, st: Static, rho_o: torch.Tensor) -> torch.Tensor:
        return sandwich(self._s_inv_half(st), rho_o)

    @staticmethod
    def _s_inv_half(st: Static) -> torch.Tensor:
        return st.ks.x

    def init_state(self, st: Static):
        return self.dynamics.init_state(st.layout.B * st.layout.A, st.s_half.dtype, st.s_half.device)

    @property
    def field_nodes(self) -> bool:
        """The rollout passes the field at each step's start, mean and end (``linear_response='exact'``)."""
        return self.cfg.linear_response == "exact"

    def step(self, st: Static, state, rho_o, drho_o, e_sub, dt):
        """One recurrent model call in the Löwdin basis: rho_o, drho_o [B, 2, N, N]; e_sub [k, B, 3] the field over
        each sub-step ([k, B, 3 nodes, 3] with ``field_nodes``) -> (next k states [k, B, 2, N, N], new recurrent
        state)."""
        nodes = None
        if self.field_nodes:
            nodes, e_sub = e_sub, e_sub[..., 1, :]
        if not self.cfg.network:
            return self._head_only(st, rho_o, drho_o, e_sub, dt, nodes)[0], state
        tokens, phi, cache = self._encode(st, rho_o, drho_o, e_sub[0])
        latent, state = self.dynamics.step(tokens, st.cond, phi, state)
        return self._decode_and_step(st, latent, cache, rho_o, drho_o, e_sub, dt, nodes)[0], state
