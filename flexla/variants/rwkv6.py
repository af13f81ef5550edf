"""RWKV-6 (Peng et al., 2024, "Eagle and Finch"): a log decay w per token and key, and a bonus u
per head and key for the current token, which reads the state before its own write.

    o_t = r_t (S_{t-1} + diag(u) k_t^T v_t)            S_t = diag(exp(w_t)) S_{t-1} + k_t^T v_t

With G the inclusive cumulative decay, token i reads exp(G_i - w_i - G_j) from token j < i.
"""
import flexla


@flexla.linear_attention(chunk_size=64)
class RWKV6:
    def intra(q, k, v, w: "[C, K]", u: "[K]"):
        g = w.cumsum(0)
        A = flexla.gated_scores(q * (-w).exp(), k, g).tril(-1)
        bonus = (q * u * k).sum(-1)
        return dict(o=A @ v + bonus[:, None] * v, qg=q * (g - w).exp(), kv=(k * (g[-1] - g).exp()).T @ v,
                    decay=g[-1].exp())

    def update(S, c):
        return S * c["decay"][:, None] + c["kv"]

    def merge(S, c):
        return c["o"] + c["qg"] @ S
