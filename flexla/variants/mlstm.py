"""mLSTM with a sigmoid input gate (Beck et al., 2024, "xLSTM"; the form of Beck et al., 2025,
"Tiled Flash Linear Attention"): a matrix memory C and a normaliser n, both decayed by the
forget gate sigmoid(f) and written through the input gate sigmoid(i).

    C_t = sigmoid(f_t) C_{t-1} + sigmoid(i_t) k_t^T v_t        n_t = sigmoid(f_t) n_{t-1} + sigmoid(i_t) k_t
    h_t = q_t C_t / (max(|q_t . n_t|, 1) + eps)
"""
import torch
import torch.nn.functional as F

import flexla


@flexla.linear_attention(chunk_size=64, state=("[K, V]", "[K]"))
class MLSTM:
    def intra(q, k, v, i: "[C]", f: "[C]", eps: "[]"):
        g = F.logsigmoid(f).cumsum(0)
        ki = k * torch.sigmoid(i)[:, None]
        A = (q @ ki.T) * (g[:, None] - g[None, :]).tril().exp().tril()
        kd = ki * (g[-1] - g).exp()[:, None]
        return dict(o=A @ v, qn=A.sum(1), qg=q * g.exp()[:, None], kv=kd.T @ v, kn=kd.sum(0),
                    decay=g[-1].exp(), eps=eps)

    def update(S, c):
        C, n = S
        return C * c["decay"] + c["kv"], n * c["decay"] + c["kn"]

    def merge(S, c):
        C, n = S
        den = c["qn"] + c["qg"] @ n
        return (c["o"] + c["qg"] @ C) / (torch.maximum(den.abs(), torch.ones_like(den)) + c["eps"])[:, None]
