"""GLA (Yang et al., 2024, "Gated Linear Attention Transformers with Hardware-Efficient
Training"): a log-space gate per token, head and key.

    S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t            o_t = q_t S_t

The in-chunk scores sum_k q_ik k_jk exp(G_ik - G_jk) come from flexla.gated_scores, which forms
every exponent pairwise (never positive), so any gate strength is safe.
"""
import flexla


@flexla.linear_attention(chunk_size=64)
class GLA:
    def intra(q, k, v, g: "[C, K]"):
        g = g.cumsum(0)
        A = flexla.gated_scores(q, k, g)
        return dict(o=A @ v, qg=q * g.exp(), kv=(k * (g[-1] - g).exp()).T @ v, decay=g[-1].exp())

    def update(S, c):
        return S * c["decay"][:, None] + c["kv"]

    def merge(S, c):
        return c["o"] + c["qg"] @ S
