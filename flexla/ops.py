"""FLA-compatible functions built on the shipped variants: same names, argument names, layout
[B, T, H, D] and gate conventions as flash-linear-attention 0.6, each returning (o, final_state).

    from flexla.ops import chunk_gla          # instead of: from fla.ops.gla import chunk_gla

Gates are natural-log decays per step (the state is multiplied by exp(g)). `cu_seqlens` (varlen,
B == 1) is accepted and runs one launch per sequence.
"""
from __future__ import annotations

import functools

import torch

from .variants.delta_rule import DeltaNet
from .variants.delta_rule_qk_norm import DeltaNetQKNorm
from .variants.gated_delta_rule import GatedDeltaNet
from .variants.gated_delta_rule_qk_norm import GatedDeltaNetQKNorm
from .variants.gla import GLA
from .variants.hgrn import HGRN
from .variants.kda import KDA
from .variants.kda_qk_norm import KDAQKNorm
from .variants.linear_attn import LinearAttention
from .variants.linear_attn_normalized import NormalizedLinearAttention
from .variants.mamba2 import Mamba2
from .variants.mlstm import MLSTM
from .variants.retention import Retention
from .variants.rwkv6 import RWKV6
from .variants.simple_gla import SimpleGLA

__all__ = ["chunk_linear_attn", "chunk_retention", "chunk_simple_gla", "chunk_gla", "chunk_delta_rule",
           "chunk_gated_delta_rule", "chunk_kda", "chunk_rwkv6", "chunk_hgrn", "chunk_mamba2", "chunk_mlstm"]


def _run(variant, q, k, v, extras, scale, initial_state, output_final_state, cu_seqlens):
    """One call, or one call per sequence of a varlen batch (extras per token are split too)."""
    if cu_seqlens is None:
        return variant(q, k, v, *extras, scale=scale, initial_state=initial_state,
                       output_final_state=output_final_state)
    if q.shape[0] != 1:
        raise ValueError(f"The batch size is expected to be 1 rather than {q.shape[0]} when using `cu_seqlens`.")
    bounds = [int(x) for x in cu_seqlens.tolist()]
    n = len(bounds) - 1
    several = isinstance(initial_state, tuple)          # a variant with more than one state
    first = initial_state[0] if several else initial_state
    if first is not None and first.shape[0] != n:
        raise ValueError(f"The number of initial states is expected to be equal to the number of input "
                         f"sequences, i.e., {n} rather than {first.shape[0]}.")
    outs, finals = [], []
    for i, (bos, eos) in enumerate(zip(bounds[:-1], bounds[1:])):
        sl = lambda x: x[:, bos:eos] if x.dim() >= 3 else x
        h0 = (None if initial_state is None else tuple(s[i:i + 1] for s in initial_state) if several
              else initial_state[i:i + 1])
        o, ht = variant(sl(q), sl(k), sl(v), *[sl(e) for e in extras], scale=scale, initial_state=h0,
                        output_final_state=output_final_state)
        outs.append(o)
        finals.append(ht)
    if not output_final_state:
        return torch.cat(outs, 1), None
    return torch.cat(outs, 1), (tuple(torch.cat(f, 0) for f in zip(*finals)) if isinstance(finals[0], tuple)
                                else torch.cat(finals, 0))


def chunk_linear_attn(q, k, v, scale=None, initial_state=None, output_final_state=False,
                      normalize=True, cu_seqlens=None):
    """Linear attention. With normalize=True (FLA's default) the output is divided by
    q . (sum of keys so far) + 1e-10, in the kernels (variants/linear_attn_normalized.py), and the
    state is the pair (S, z) with z [N, 1, H, K]; a bare initial state is S, with z = 0."""
    if not normalize:
        return _run(LinearAttention, q, k, v, [], scale, initial_state, output_final_state, cu_seqlens)
    S0, z0 = initial_state if isinstance(initial_state, tuple) else (initial_state, None)
    h0 = None
    if S0 is not None or z0 is not None:
        N, H, K, V = (z0.shape[0], q.shape[2], q.shape[3], v.shape[3]) if S0 is None else S0.shape
        h0 = (torch.zeros(N, H, K, V, device=q.device) if S0 is None else S0,
              torch.zeros(N, H, K, device=q.device) if z0 is None else z0[:, 0])
    o, ht = _run(NormalizedLinearAttention, q, k, v, [], scale, h0, output_final_state, cu_seqlens)
    return o, ((ht[0], ht[1][:, None].to(k.dtype)) if output_final_state else None)


def chunk_retention(q, k, v, scale=None, initial_state=None, output_final_state=False, cu_seqlens=None):
    """RetNet retention: head h decays by gamma_h = 1 - 2^(-5-h) per step."""
    return _run(Retention, q, k, v, [_log_gammas(q.shape[2], q.device)], scale, initial_state, output_final_state,
                cu_seqlens)


@functools.lru_cache(maxsize=64)
def _log_gammas(H: int, device) -> torch.Tensor:
    """Retention's per-head log decays, made once per head count and device (five small launches
    a call otherwise); on the device, since a host tensor copied per call would make every call
    wait for the GPU."""
    return torch.log1p(-torch.exp2(-5.0 - torch.arange(H, device=device, dtype=torch.float32)))


def chunk_simple_gla(q, k, v, g=None, g_gamma=None, scale=None, initial_state=None,
                     output_final_state=False, cu_seqlens=None):
    """Simple GLA: g [B, T, H] per-token log decay and/or g_gamma [H] per-head log decay (both add)."""
    if g is None and g_gamma is None:
        return _run(LinearAttention, q, k, v, [], scale, initial_state, output_final_state, cu_seqlens)
    if g is None:
        return _run(Retention, q, k, v, [g_gamma], scale, initial_state, output_final_state, cu_seqlens)
    if g_gamma is not None:
        g = g.float() + g_gamma.float()
    return _run(SimpleGLA, q, k, v, [g], scale, initial_state, output_final_state, cu_seqlens)


def chunk_gla(q, k, v, g, scale=None, initial_state=None, output_final_state=False, cu_seqlens=None):
    """GLA: g [B, T, H, K], a per-key log decay per token."""
    return _run(GLA, q, k, v, [g], scale, initial_state, output_final_state, cu_seqlens)


def _delta(plain, normed, q, k, v, extras, scale, initial_state, output_final_state, l2, cu_seqlens):
    """A delta-rule variant, or its twin that L2-normalises q and k inside the kernel; the twin
    takes the scale per head, since normalising would undo flexla's scaling of q before intra."""
    if not l2:
        return _run(plain, q, k, v, extras, scale, initial_state, output_final_state, cu_seqlens)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    q_scale = torch.full((q.shape[2],), float(scale), device=q.device)
    return _run(normed, q, k, v, [*extras, q_scale], 1.0, initial_state, output_final_state, cu_seqlens)


def chunk_delta_rule(q, k, v, beta, scale=None, initial_state=None, output_final_state=False,
                     use_qk_l2norm_in_kernel=False, cu_seqlens=None):
    """DeltaNet: beta [B, T, H] write strength; k is expected L2-normalised (or set
    use_qk_l2norm_in_kernel=True to normalise q and k inside the kernel, as FLA does)."""
    return _delta(DeltaNet, DeltaNetQKNorm, q, k, v, [beta], scale, initial_state, output_final_state,
                  use_qk_l2norm_in_kernel, cu_seqlens)


def chunk_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False,
                           use_qk_l2norm_in_kernel=False, cu_seqlens=None):
    """Gated DeltaNet: g [B, T, H] log decay, beta [B, T, H] write strength."""
    return _delta(GatedDeltaNet, GatedDeltaNetQKNorm, q, k, v, [g, beta], scale, initial_state,
                  output_final_state, use_qk_l2norm_in_kernel, cu_seqlens)


def chunk_mamba2(x, dt, A, B, C, initial_state=None, output_final_state=False):
    """Mamba2's SSD in `mamba_ssm`'s names and layout (mamba_chunk_scan_combined without D, z and
    dt_bias): x [B, T, H, P], dt [B, T, H] (already positive), A [H], B and C [B, T, G, N] shared by
    the H/G heads of each group (not copied). States are [B, H, P, N] as in mamba_ssm."""
    h0 = initial_state.transpose(-1, -2) if initial_state is not None else None
    y, ht = Mamba2(C, B, x, dt, A, scale=1.0, initial_state=h0, output_final_state=output_final_state)
    return y, (ht.transpose(-1, -2) if ht is not None else None)


def chunk_mlstm(q, k, v, i, f, scale=None, initial_state=None, output_final_state=False, eps=1e-6):
    """mLSTM with sigmoid input gate: i, f [B, T, H] pre-activation input and forget gates; the
    state is the pair (C [B, H, K, V], n [B, H, K])."""
    eps_h = torch.full((q.shape[2],), float(eps), device=q.device)
    return MLSTM(q, k, v, i, f, eps_h, scale=scale, initial_state=initial_state,
                 output_final_state=output_final_state)


def chunk_kda(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False,
              use_qk_l2norm_in_kernel=False, cu_seqlens=None):
    """KDA: g [B, T, H, K] per-key log decay, beta [B, T, H] write strength."""
    return _delta(KDA, KDAQKNorm, q, k, v, [g, beta], scale, initial_state, output_final_state,
                  use_qk_l2norm_in_kernel, cu_seqlens)


def chunk_rwkv6(r, k, v, w, u, scale=None, initial_state=None, output_final_state=False, cu_seqlens=None):
    """RWKV-6: r (receptance, the query) [B, T, H, K], w [B, T, H, K] log decay, u [H, K] bonus."""
    return _run(RWKV6, r, k, v, [w, u], scale, initial_state, output_final_state, cu_seqlens)


def chunk_hgrn(x, g, initial_state=None, output_final_state=False):
    """HGRN: x, g [B, T, D]; h_t = exp(g_t) h_{t-1} + x_t, output h_t; states [B, D]."""
    ones = torch.ones(*x.shape, 1, dtype=x.dtype, device=x.device)
    h0 = initial_state[..., None, None] if initial_state is not None else None
    o, ht = HGRN(ones, ones, x[..., None], g, scale=1.0, initial_state=h0, output_final_state=output_final_state)
    return o[..., 0], (ht[..., 0, 0] if ht is not None else None)
