"""GLA (Yang et al., 2024, "Gated Linear Attention Transformers with Hardware-Efficient
Training"): a log-space gate per token, head and key.

    S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t            o_t = q_t S_t

Inside a chunk the pairwise decay exp(G_i - G_j) is split as exp(G_i - G_0) * exp(G_0 - G_j),
so the factors stay within exp(total decay of one chunk) of 1.
"""
import flexla


@flexla.linear_attention(chunk_size=64)
class GLA:
    def intra(q, k, v, g: "[C, K]"):
        g = g.cumsum(0)
        A = ((q * (g - g[0]).exp()) @ (k * (g[0] - g).exp()).T).tril()
        return dict(o=A @ v, qg=q * g.exp(), kv=(k * (g[-1] - g).exp()).T @ v, decay=g[-1].exp())

    def update(S, c):
        return S * c["decay"][:, None] + c["kv"]

    def merge(S, c):
        return c["o"] + c["qg"] @ S
