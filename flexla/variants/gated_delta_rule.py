"""Gated DeltaNet (Yang et al., 2025, "Gated Delta Networks: Improving Mamba2 with Delta Rule"):
a scalar log decay g and a write strength beta per token and head.

    S_t = exp(g_t) S_{t-1} + beta_t k_t^T (v_t - exp(g_t) k_t S_{t-1})            o_t = q_t S_t

With G the in-chunk cumulative gate and D_ij = exp(G_i - G_j) (i >= j): T = I + tril(diag(beta)
(K K^T * D), -1), W = T^-1 diag(beta exp(G)) K, U = T^-1 diag(beta) V, and
S_C = exp(G_C) S_0 + (K exp(G_C - G))^T (U - W S_0).
"""
import torch

import flexla


@flexla.linear_attention(chunk_size=64)
class GatedDeltaNet:
    def intra(q, k, v, g: "[C]", beta: "[C]"):
        g = g.cumsum(0)
        D = (g[:, None] - g[None, :]).tril().exp().tril()
        T = torch.eye(q.shape[0]) + ((k * beta[:, None]) @ k.T * D).tril(-1)
        w = torch.linalg.solve_triangular(T, k * (beta * g.exp())[:, None], upper=False, unitriangular=True)
        u = torch.linalg.solve_triangular(T, v * beta[:, None], upper=False, unitriangular=True)
        return dict(qg=q * g.exp()[:, None], kd=k * (g[-1] - g).exp()[:, None], w=w, u=u,
                    A=(q @ k.T * D).tril(), decay=g[-1].exp())

    def update(S, c):
        return c["decay"] * S + c["kd"].T @ (c["u"] - c["w"] @ S)

    def merge(S, c):
        return c["qg"] @ S + c["A"] @ (c["u"] - c["w"] @ S)
