"""Simple GLA: one log-space gate g per token and head (the Mamba2 / RetNet family;
Yang et al., 2024, "Gated Linear Attention Transformers with Hardware-Efficient Training";
Dao & Gu, 2024, "Transformers are SSMs").

    S_t = exp(g_t) S_{t-1} + k_t^T v_t            o_t = q_t S_t

Every exponent is <= 0: decays are differences of the in-chunk cumulative gate.
"""
import flexla


@flexla.linear_attention(chunk_size=64)
class SimpleGLA:
    def intra(q, k, v, g: "[C]"):
        g = g.cumsum(0)
        decay = (g[:, None] - g[None, :]).tril().exp()     # tril first: no exp of a positive number
        A = ((q @ k.T) * decay).tril()
        return dict(o=A @ v, qg=q * g.exp()[:, None],
                    kv=(k * (g[-1] - g).exp()[:, None]).T @ v, decay=g[-1].exp())

    def update(S, c):
        return S * c["decay"] + c["kv"]

    def merge(S, c):
        return c["o"] + c["qg"] @ S
