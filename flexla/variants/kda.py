"""KDA, Kimi Delta Attention (Kimi Team, 2025, "Kimi Linear"): the gated delta rule with a
log decay per key instead of per head.

    S_t = diag(exp(g_t)) S_{t-1}          then          S_t = S_t + beta_t k_t^T (v_t - k_t S_t)
    o_t = q_t S_t

In-chunk, with G the cumulative gate: T = I + tril(gated_scores(beta k, k, G), -1),
W = T^-1 diag(beta) (K exp(G)), U = T^-1 diag(beta) V, S_C = diag(exp(G_C)) S_0 + (K exp(G_C - G))^T (U - W S_0).
"""
import torch

import flexla


@flexla.linear_attention(chunk_size=64)
class KDA:
    def intra(q, k, v, g: "[C, K]", beta: "[C]"):
        g = g.cumsum(0)
        T = torch.eye(q.shape[0]) + flexla.gated_scores(k * beta[:, None], k, g).tril(-1)
        w = torch.linalg.solve_triangular(T, k * g.exp() * beta[:, None], upper=False, unitriangular=True)
        u = torch.linalg.solve_triangular(T, v * beta[:, None], upper=False, unitriangular=True)
        return dict(qg=q * g.exp(), kd=k * (g[-1] - g).exp(), w=w, u=u, A=flexla.gated_scores(q, k, g),
                    decay=g[-1].exp())

    def update(S, c):
        return c["decay"][:, None] * S + c["kd"].T @ (c["u"] - c["w"] @ S)

    def merge(S, c):
        return c["qg"] @ S + c["A"] @ (c["u"] - c["w"] @ S)
