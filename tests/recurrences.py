"""Independent float64 token-by-token reference recurrences for four FLA ops.

These are written from the recurrence equations (not by calling FLA) and mirror
the argument conventions of ``fla-core==0.6.0``:

    fla.ops.linear_attn.chunk_linear_attn  -> linear_attn_ref
    fla.ops.retention.chunk_retention      -> retention_ref
    fla.ops.simple_gla.chunk_simple_gla    -> simple_gla_ref
    fla.ops.gla.chunk_gla                  -> gla_ref

Common conventions (FLA 0.6.0):
  * layout is ``[B, T, H, D]`` (``head_first`` was removed; FLA raises
    ``DeprecationWarning`` if it is passed to ``chunk_simple_gla`` /
    ``chunk_retention``; ``chunk_gla`` / ``chunk_linear_attn`` have no
    ``**kwargs`` so it is a ``TypeError`` there);
  * ``scale=None`` means ``K ** -0.5`` (K = head dim of q/k);
  * the recurrent state is ``h`` of shape ``[B, H, K, V]`` (``[N, H, K, V]``
    for ``N`` varlen sequences); FLA returns it in float32, here float64;
  * gates are natural-log decays (FLA multiplies them by 1/ln2 internally and
    uses ``exp2``), i.e. the per-step state multiplier is ``exp(g)``;
  * ``cu_seqlens`` (varlen, requires B == 1) resets the state at each sequence
    boundary; ``initial_state`` / final state then have leading dim ``N``.

Every input is upcast to float64; ``o`` is returned in float64. ``final_state``
is ``None`` unless ``output_final_state`` (see ``linear_attn_ref`` for the one
difference from FLA's behaviour with ``normalize=True``).
"""

from __future__ import annotations

import torch

__all__ = ["linear_attn_ref", "retention_ref", "simple_gla_ref", "gla_ref", "retention_log_decay"]

_F64 = torch.float64


def _f64(x):
    return None if x is None else x.to(_F64)


def _check_varlen(q, initial_state, cu_seqlens):
    if cu_seqlens is None:
        return
    if q.shape[0] != 1:
        raise ValueError(
            f"The batch size is expected to be 1 rather than {q.shape[0]} when using `cu_seqlens`."
        )
    if initial_state is not None and initial_state.shape[0] != len(cu_seqlens) - 1:
        raise ValueError(
            f"The number of initial states is expected to be equal to the number of input "
            f"sequences, i.e., {len(cu_seqlens) - 1} rather than {initial_state.shape[0]}."
        )


def _state0(B, H, K, V, initial_state, device):
    """The [B, H, K, V] float64 state a recurrence starts from: zeros, plus initial_state if given."""
    S = torch.zeros(B, H, K, V, dtype=_F64, device=device)
    return S if initial_state is None else S + _f64(initial_state)


def _scan(q, k, v, log_decay, scale, h0):
    """Core float64 recurrence for one batch of equal-length sequences.

    q, k: [B, T, H, K]; v: [B, T, H, V]; log_decay: None, or a tensor broadcastable
    to [B, T, H, K] (natural log, applied along the K axis of the state);
    h0: None or [B, H, K, V].

        h_t = exp(log_decay_t)[..., :, None] * h_{t-1} + k_t^T v_t
        o_t = scale * q_t h_t
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    h = _state0(B, H, K, V, h0, q.device)
    o = torch.zeros(B, T, H, V, dtype=_F64, device=q.device)
    for t in range(T):
        if log_decay is not None:
            h = torch.exp(log_decay[:, t]).unsqueeze(-1) * h  # [B,H,K,1] * [B,H,K,V]
        h = h + k[:, t].unsqueeze(-1) * v[:, t].unsqueeze(-2)  # outer product k_t v_t^T
        o[:, t] = scale * torch.einsum("bhk,bhkv->bhv", q[:, t], h)
    return o, h


def _scan_varlen(q, k, v, log_decay, scale, h0, cu_seqlens):
    """Run ``_scan`` per sequence (B==1 when cu_seqlens is given)."""
    if cu_seqlens is None:
        return _scan(q, k, v, log_decay, scale, h0)
    offs = [int(x) for x in cu_seqlens.tolist()]
    N = len(offs) - 1
    H, K, V = q.shape[2], q.shape[3], v.shape[-1]
    o = torch.zeros(*v.shape[:3], V, dtype=_F64, device=q.device)
    hts = []
    for n in range(N):
        s, e = offs[n], offs[n + 1]
        ld = None if log_decay is None else log_decay[:, s:e]
        h0n = None if h0 is None else h0[n:n + 1]
        o_n, h_n = _scan(q[:, s:e], k[:, s:e], v[:, s:e], ld, scale, h0n)
        o[:, s:e] = o_n
        hts.append(h_n)
    ht = torch.cat(hts, 0) if hts else torch.zeros(0, H, K, V, dtype=_F64, device=q.device)
    return o, ht


def _default_scale(scale, q):
    return q.shape[-1] ** -0.5 if scale is None else scale


def linear_attn_ref(q, k, v, scale=None, initial_state=None, output_final_state=False,
                    normalize=True, cu_seqlens=None):
    r"""Reference for ``fla.ops.linear_attn.chunk_linear_attn`` (FLA 0.6.0).

    Recurrence (``S_0 = initial_state`` or 0, ``s = scale`` default ``K**-0.5``)::

        S_t = S_{t-1} + k_t^T v_t                  # [K, V], no decay
        o_t = s * q_t S_t                          # normalize=False

    ``normalize=True`` (the DEFAULT of ``chunk_linear_attn``) divides by a
    running key-sum denominator, computed *after* the unnormalised output::

        z_t = z_0 + sum_{u<=t} k_u                 # z_0 = 0 unless given
        o_t = (s * q_t S_t) / (s * q_t . z_t + 1e-10)

    (the scale cancels except against the 1e-10 eps; no abs/clamp, so the
    denominator can be ~0 or negative for signed q/k).

    State conventions:
      * ``normalize=False``: ``initial_state`` is a ``[N,H,K,V]`` tensor and the
        final state is ``S_T`` ``[N,H,K,V]``.
      * ``normalize=True``: ``initial_state`` may be a tuple ``(S_0, z_0)`` with
        ``z_0`` of shape ``[N,1,H,K]`` (a bare tensor is taken as ``S_0`` with
        ``z_0 = 0``); the final state is the tuple ``(S_T, z_T)`` with ``S_T``
        the raw (un-normalised) kv state and ``z_T`` of shape ``[N,1,H,K]``.
        In FLA ``S_T`` is float32 while ``z_T`` has k's dtype.
      * FLA quirk: with ``normalize=True`` and ``output_final_state=False``
        ``chunk_linear_attn`` returns ``(o, (None, z_T))`` rather than
        ``(o, None)``; this reference returns ``(o, None)`` as requested.
    """
    if normalize and isinstance(initial_state, tuple):
        kv_init, z_init = initial_state
    else:
        kv_init, z_init = initial_state, None
    if isinstance(kv_init, tuple):
        raise TypeError("tuple initial_state is only valid with normalize=True")
    _check_varlen(q, kv_init, cu_seqlens)
    scale = _default_scale(scale, k)
    q, k, v = _f64(q), _f64(k), _f64(v)
    o, S = _scan_varlen(q, k, v, None, scale, _f64(kv_init), cu_seqlens)
    if not normalize:
        return o, (S if output_final_state else None)

    # running key sum per sequence
    B, T, H, K = k.shape
    z_init = _f64(z_init)
    k_cum = torch.zeros_like(k)
    offs = [0, T] if cu_seqlens is None else [int(x) for x in cu_seqlens.tolist()]
    z_fin = []
    for n in range(len(offs) - 1):
        if cu_seqlens is None:
            z = torch.zeros(B, H, K, dtype=_F64, device=k.device) if z_init is None else z_init[:, 0].clone()
        else:
            z = torch.zeros(1, H, K, dtype=_F64, device=k.device) if z_init is None else z_init[n:n + 1, 0].clone()
        for t in range(offs[n], offs[n + 1]):
            z = z + k[:, t]
            k_cum[:, t] = z
        z_fin.append(z)
    denom = (q * scale * k_cum).sum(-1, keepdim=True) + 1e-10
    o = o / denom
    if not output_final_state:
        return o, None
    z_T = torch.cat(z_fin, 0).unsqueeze(1)  # [N, 1, H, K]
    return o, (S, z_T)


def retention_log_decay(H, device=None):
    r"""Per-head natural-log decay used by ``chunk_retention``:
    ``g_gamma[h] = log(1 - 2**(-5 - h))``, h = 0..H-1 (FLA computes this in float32;
    here float64)."""
    h = torch.arange(H, dtype=_F64, device=device)
    return torch.log1p(-torch.pow(2.0, -5.0 - h))


def retention_ref(q, k, v, scale=None, initial_state=None, output_final_state=False,
                  cu_seqlens=None, **kwargs):
    r"""Reference for ``fla.ops.retention.chunk_retention`` (FLA 0.6.0).

    Retention (RetNet) = simple GLA with a fixed per-head decay::

        gamma_h = 1 - 2^{-5-h}          (h = head index 0..H-1)
        S_t = gamma_h * S_{t-1} + k_t^T v_t
        o_t = scale * q_t S_t           (scale default K**-0.5)

    FLA implements it as ``chunk_simple_gla(..., g_gamma=log(gamma))`` with
    ``g_gamma = (1 - 2.0 ** (-5.0 - torch.arange(H, dtype=torch.float))).log()``
    (float32). No group norm / no output gating here (those live in the layer).
    ``kwargs``: ``head_first`` raises ``DeprecationWarning`` (as in FLA),
    ``chunk_size`` is accepted and ignored.
    Returns ``(o, final_state)``, final_state ``[N,H,K,V]`` or None.
    """
    if "head_first" in kwargs:
        raise DeprecationWarning("head_first has been removed. Inputs must be in `[B, T, H, ...]` format.")
    kwargs.pop("chunk_size", None)
    g_gamma = retention_log_decay(q.shape[2], device=q.device)
    return simple_gla_ref(q, k, v, g=None, g_gamma=g_gamma, scale=scale, initial_state=initial_state,
                          output_final_state=output_final_state, cu_seqlens=cu_seqlens)


def simple_gla_ref(q, k, v, g=None, g_gamma=None, scale=None, initial_state=None,
                   output_final_state=False, state_v_first=False, cu_seqlens=None, **kwargs):
    r"""Reference for ``fla.ops.simple_gla.chunk_simple_gla`` (FLA 0.6.0).

    Head-wise scalar gating (``g``: ``[B,T,H]``, natural log, data dependent;
    ``g_gamma``: ``[H]``, natural-log, data-independent per-head decay)::

        a_t = g[t, h] (if g given) + g_gamma[h] (if g_gamma given)
        S_t = exp(a_t) * S_{t-1} + k_t^T v_t
        o_t = scale * q_t S_t             (scale default K**-0.5)

    FLA's docs say only one of ``g``/``g_gamma`` should be given and there is
    no check: passing both gives GARBAGE in FLA 0.6.0 (``chunk_fwd_kernel_h``
    overwrites the g_gamma cumsum with g's, mixing the two; measured rel err
    ~1e23 on H200), so never compare that case against FLA. This reference
    applies both (``a_t = g_t + g_gamma``), the natural semantics. Neither ->
    plain (unnormalised) linear attention. ``state_v_first=True`` means
    ``initial_state``/final state are stored as ``[N,H,V,K]``.
    ``kwargs``: ``head_first`` -> DeprecationWarning; ``chunk_size`` ignored.
    Returns ``(o, final_state)``; FLA's final state is float32 ``[N,H,K,V]``.
    """
    if "head_first" in kwargs:
        raise DeprecationWarning("head_first has been removed. Inputs must be in `[B, T, H, ...]` format.")
    kwargs.pop("chunk_size", None)
    kwargs.pop("cu_seqlens_cpu", None)
    _check_varlen(q, initial_state, cu_seqlens)
    scale = _default_scale(scale, k)
    B, T, H, K = q.shape
    q, k, v = _f64(q), _f64(k), _f64(v)
    log_decay = None
    if g is not None:
        assert g.shape == (B, T, H), f"g must be [B,T,H], got {tuple(g.shape)}"
        log_decay = _f64(g).unsqueeze(-1).expand(B, T, H, K)
    if g_gamma is not None:
        gg = _f64(g_gamma).reshape(1, 1, H, 1).expand(B, T, H, K)
        log_decay = gg if log_decay is None else log_decay + gg
    h0 = _f64(initial_state)
    if h0 is not None and state_v_first:
        h0 = h0.transpose(-1, -2)
    o, ht = _scan_varlen(q, k, v, log_decay, scale, h0, cu_seqlens)
    if not output_final_state:
        return o, None
    return o, (ht.transpose(-1, -2).contiguous() if state_v_first else ht)


def gla_ref(q, k, v, g, scale=None, initial_state=None, output_final_state=False,
            state_v_first=False, cu_seqlens=None, cu_seqlens_cpu=None):
    r"""Reference for ``fla.ops.gla.chunk_gla`` (FLA 0.6.0).

    Element-wise (per key-channel) gating, ``g``: ``[B,T,H,K]`` natural-log
    forget gate (typically ``logsigmoid(.)/16``)::

        S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t     # decays rows (K axis) of S
        o_t = scale * q_t S_t                        (scale default K**-0.5)

    FLA asserts ``q.shape == k.shape == g.shape``, ``v.shape[:3] == q.shape[:3]``
    and ``initial_state.dtype == torch.float32`` (the dtype assert is not
    mirrored here, inputs are upcast). Returns ``(o, final_state)``; FLA's
    ``o`` has v's dtype, final state float32 ``[N,H,K,V]`` (``[N,H,V,K]`` if
    ``state_v_first``).
    """
    _check_varlen(q, initial_state, cu_seqlens)
    scale = _default_scale(scale, q)
    assert q.shape == k.shape == g.shape, "q, k, g must have the same shape."
    assert v.shape == (*q.shape[:3], v.shape[-1]), "v must be of shape (B, T, H, V)."
    q, k, v, g = _f64(q), _f64(k), _f64(v), _f64(g)
    h0 = _f64(initial_state)
    if h0 is not None and state_v_first:
        h0 = h0.transpose(-1, -2)
    o, ht = _scan_varlen(q, k, v, g, scale, h0, cu_seqlens)
    if not output_final_state:
        return o, None
    return o, (ht.transpose(-1, -2).contiguous() if state_v_first else ht)


def _l2norm(x):
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + 1e-6)


def gated_delta_rule_ref(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False,
                         use_qk_l2norm_in_kernel=False):
    r"""Reference for ``fla.ops.gated_delta_rule.chunk_gated_delta_rule`` (Yang et al., 2025)::

        S_t = exp(g_t) S_{t-1}                                   # decay first
        S_t = S_t + beta_t k_t^T (v_t - k_t S_t)                 # then the delta-rule write
        o_t = s * q_t S_t

    ``g`` [B,T,H] natural-log decay (``None``: no decay, i.e. DeltaNet), ``beta`` [B,T,H].
    With ``use_qk_l2norm_in_kernel`` q and k are divided by sqrt(|x|^2 + 1e-6) first. It is KDA's
    recurrence with the same decay for every key.
    """
    g = torch.zeros(beta.shape, dtype=_F64, device=q.device) if g is None else _f64(g)
    return kda_ref(q, k, v, g[..., None], beta, scale, initial_state, output_final_state,
                   use_qk_l2norm_in_kernel)


def delta_rule_ref(q, k, v, beta, scale=None, initial_state=None, output_final_state=False,
                   use_qk_l2norm_in_kernel=False):
    """Reference for ``fla.ops.delta_rule.chunk_delta_rule`` (Schlag et al., 2021): the gated
    delta rule without decay, ``S_t = S_{t-1} + beta_t k_t^T (v_t - k_t S_{t-1})``."""
    return gated_delta_rule_ref(q, k, v, None, beta, scale, initial_state, output_final_state,
                                use_qk_l2norm_in_kernel)


def kda_ref(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False,
            use_qk_l2norm_in_kernel=False):
    r"""Reference for ``fla.ops.kda.chunk_kda`` (Kimi Delta Attention): the gated delta rule with
    a per-key log decay ``g`` [B,T,H,K]::

        S_t = diag(exp(g_t)) S_{t-1};   S_t = S_t + beta_t k_t^T (v_t - k_t S_t);   o_t = s q_t S_t
    """
    scale = _default_scale(scale, k)
    q, k, v, g, beta = _f64(q), _f64(k), _f64(v), _f64(g), _f64(beta)
    if use_qk_l2norm_in_kernel:
        q, k = _l2norm(q), _l2norm(k)
    B, T, H, K = q.shape
    S = _state0(B, H, K, v.shape[-1], initial_state, q.device)
    out = []
    for t in range(T):
        S = g[:, t].exp()[..., :, None] * S
        kt = k[:, t]
        err = v[:, t] - torch.einsum("bhk,bhkv->bhv", kt, S)
        S = S + beta[:, t][..., None, None] * kt[..., :, None] * err[..., None, :]
        out.append(scale * torch.einsum("bhk,bhkv->bhv", q[:, t], S))
    return torch.stack(out, 1), (S if output_final_state else None)


def rwkv6_ref(r, k, v, w, u, scale=None, initial_state=None, output_final_state=False):
    r"""Reference for ``fla.ops.rwkv6.chunk_rwkv6`` (Peng et al., 2024)::

        o_t = s r_t (S_{t-1} + diag(u) k_t^T v_t)          S_t = diag(exp(w_t)) S_{t-1} + k_t^T v_t
    """
    scale = _default_scale(scale, k)
    r, k, v, w, u = _f64(r), _f64(k), _f64(v), _f64(w), _f64(u)
    B, T, H, K = r.shape
    S = _state0(B, H, K, v.shape[-1], initial_state, r.device)
    out = []
    for t in range(T):
        kv = k[:, t][..., :, None] * v[:, t][..., None, :]
        out.append(scale * torch.einsum("bhk,bhkv->bhv", r[:, t], S + u[None, :, :, None] * kv))
        S = w[:, t].exp()[..., :, None] * S + kv
    return torch.stack(out, 1), (S if output_final_state else None)


def hgrn_ref(x, g, initial_state=None, output_final_state=False):
    """Reference for ``fla.ops.hgrn.chunk_hgrn``: h_t = exp(g_t) * h_{t-1} + x_t, o_t = h_t."""
    x, g = _f64(x), _f64(g)
    h = torch.zeros_like(x[:, 0]) if initial_state is None else _f64(initial_state).clone()
    out = []
    for t in range(x.shape[1]):
        h = g[:, t].exp() * h + x[:, t]
        out.append(h)
    return torch.stack(out, 1), (h if output_final_state else None)


def mlstm_ref(q, k, v, i, f, C0, n0, scale, eps=1e-6):
    r"""mLSTM with a sigmoid input gate (the semantics of mlstm_kernels' ``*_siging_*`` kernels)::

        C_t = sigmoid(f_t) C_{t-1} + sigmoid(i_t) k_t^T v_t        n_t = sigmoid(f_t) n_{t-1} + sigmoid(i_t) k_t
        h_t = (s q_t C_t) / (max(|s q_t . n_t|, 1) + eps)
    Returns (h, (C_T, n_T)).
    """
    C, n, out = C0.clone(), n0.clone(), []
    for t in range(q.shape[1]):
        fg, ig = torch.sigmoid(f[:, t])[..., None], torch.sigmoid(i[:, t])[..., None]
        C = fg[..., None] * C + (ig * k[:, t])[..., :, None] * v[:, t][..., None, :]
        n = fg * n + ig * k[:, t]
        qt = q[:, t] * scale
        den = (qt * n).sum(-1, keepdim=True)
        out.append(torch.einsum("bhk,bhkv->bhv", qt, C) / (torch.maximum(den.abs(), torch.ones_like(den)) + eps))
    return torch.stack(out, 1), (C, n)


def mamba2_ref(x, dt, A, B, C, initial_state=None, output_final_state=False):
    """Mamba2 (SSD) in mamba_ssm's layout: h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T ([P, N] per head),
    y_t = h_t C_t; B and C [B, T, G, N] shared by the H/G heads of each group."""
    x, dt, A, B, C = map(_f64, (x, dt, A, B, C))
    Bsz, T, H, P = x.shape
    rep = lambda t: t.repeat_interleave(H // t.shape[2], dim=2)
    Bh, Ch = rep(B), rep(C)
    h = x.new_zeros(Bsz, H, P, B.shape[-1]) if initial_state is None else _f64(initial_state).clone()
    ys = []
    for t in range(T):
        decay = (dt[:, t] * A).exp()[..., None, None]
        h = decay * h + (dt[:, t][..., None] * x[:, t])[..., :, None] * Bh[:, t][..., None, :]
        ys.append(torch.einsum("bhpn,bhn->bhp", h, Ch[:, t]))
    return torch.stack(ys, 1), (h if output_final_state else None)
