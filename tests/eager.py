"""The eager chunked reference: a variant's own callbacks run chunk by chunk in float64 with
plain PyTorch, the last chunk simply shorter. Independent of flexla's compiler: only the callbacks
are shared, so it checks tracing, passes and codegen, not the callbacks' algebra."""
from __future__ import annotations

import torch


def run_eager(variant, q, k, v, *extras, scale=None, initial_state=None, chunk_size=None):
    intra, update, merge = (variant.callbacks[n] for n in ("intra", "update", "merge"))
    B, T, H, K = q.shape
    V = v.shape[-1]
    C = chunk_size or variant.chunk_size
    scale = K ** -0.5 if scale is None else scale
    q, k, v = q.double(), k.double(), v.double()
    extras = [e.double() for e in extras]
    outs, finals = [], []
    for b in range(B):
        o_heads, s_heads = [], []
        for h in range(H):
            S = initial_state[b, h].double() if initial_state is not None else q.new_zeros(K, V)
            chunks = []
            for start in range(0, T, C):
                sl = slice(start, min(start + C, T))
                tiles = [e[b, sl, h] if e.dim() >= 3 else e[h] for e in extras]
                c = intra(q[b, sl, h] * scale, k[b, sl, h], v[b, sl, h], *tiles)
                chunks.append(merge(S, c))
                S = update(S, c)
            o_heads.append(torch.cat(chunks, 0))
            s_heads.append(S)
        outs.append(torch.stack(o_heads, 1))
        finals.append(torch.stack(s_heads, 0))
    return torch.stack(outs, 0), torch.stack(finals, 0)
