"""DeltaNet (Schlag et al., 2021; chunked form: Yang et al., 2024, "Parallelizing Linear
Transformers with the Delta Rule over Sequence Length"): a write strength beta per token.

    S_t = S_{t-1} + beta_t k_t^T (v_t - k_t S_{t-1})            o_t = q_t S_t

Inside a chunk the WY form T = I + tril(diag(beta) K K^T, -1), W = T^-1 diag(beta) K,
U = T^-1 diag(beta) V gives S_C = S_0 + K^T (U - W S_0).
"""
import torch

import flexla


@flexla.linear_attention(chunk_size=64)
class DeltaNet:
    def intra(q, k, v, beta: "[C]"):
        kb = k * beta[:, None]
        T = torch.eye(q.shape[0]) + (kb @ k.T).tril(-1)
        w = torch.linalg.solve_triangular(T, kb, upper=False, unitriangular=True)
        u = torch.linalg.solve_triangular(T, v * beta[:, None], upper=False, unitriangular=True)
        return dict(q=q, k=k, w=w, u=u, A=(q @ k.T).tril())

    def update(S, c):
        return S + c["k"].T @ (c["u"] - c["w"] @ S)

    def merge(S, c):
        return c["q"] @ S + c["A"] @ (c["u"] - c["w"] @ S)
