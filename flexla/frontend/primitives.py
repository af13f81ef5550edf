"""Building blocks that plain tile ops cannot express stably, offered to callbacks as functions.

`l2norm(x)` normalises rows (q and k inside the kernel). `gated_scores(q, k, g)` is the intra-chunk score matrix of per-key gated attention (GLA, KDA,
RWKV-6): A_ij = sum_k q_ik k_jk exp(g_ik - g_jk) for i >= j, 0 above the diagonal, with g the
in-chunk cumulative log gate. Splitting exp(g_i - g_j) into exp(g_i) exp(-g_j) overflows once a
chunk decays by more than ~88 in log space; computed pairwise, every exponent is <= 0. Each is a
torch custom op, so tracing keeps it whole, with an autograd formula made of the two
`gated_apply` ops; flexla lowers all three to 16-row blocks (docs/design.md).
"""
from __future__ import annotations

import torch
from torch import Tensor


def l2norm(x: Tensor, eps: float = 1e-6) -> Tensor:
    """x / sqrt(|x|^2 + eps) along the last dim (FLA's use_qk_l2norm_in_kernel): plain tile ops,
    traced like any callback line (errors point at the callback's call)."""
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + eps)


def _pairwise_decay(g: Tensor) -> Tensor:
    """[C, C, K]: exp(g_i - g_j) on and below the diagonal, 0 above (never exp of a positive)."""
    C = g.shape[0]
    lower = torch.ones(C, C, dtype=torch.bool, device=g.device).tril()[:, :, None]
    return torch.where(lower, g[:, None, :] - g[None, :, :], float("-inf")).exp()


@torch.library.custom_op("flexla::gated_scores", mutates_args=())
def gated_scores(q: Tensor, k: Tensor, g: Tensor) -> Tensor:
    """[C, C]: sum_k q_ik k_jk exp(g_ik - g_jk) for i >= j, else 0."""
    return (q[:, None, :] * k[None, :, :] * _pairwise_decay(g)).sum(-1)


@torch.library.custom_op("flexla::gated_apply", mutates_args=())
def gated_apply(D: Tensor, x: Tensor, g: Tensor) -> Tensor:
    """[C, K]: sum_{j <= i} D_ij x_jk exp(g_ik - g_jk)  (the gradient of gated_scores w.r.t. q)."""
    return (D[:, :, None] * x[None, :, :] * _pairwise_decay(g)).sum(1)


@torch.library.custom_op("flexla::gated_apply_t", mutates_args=())
def gated_apply_t(D: Tensor, x: Tensor, g: Tensor) -> Tensor:
    """[C, K]: sum_{i >= j} D_ij x_ik exp(g_ik - g_jk)  (the gradient of gated_scores w.r.t. k)."""
    return (D[:, :, None] * x[:, None, :] * _pairwise_decay(g)).sum(0)


@gated_scores.register_fake
def _(q, k, g):
    return q.new_empty(q.shape[0], k.shape[0])


@gated_apply.register_fake
def _(D, x, g):
    return x.new_empty(x.shape)


@gated_apply_t.register_fake
def _(D, x, g):
    return x.new_empty(x.shape)


def _setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _scores_backward(ctx, dA):
    q, k, g = ctx.saved_tensors
    dq, dk = gated_apply(dA, k, g), gated_apply_t(dA, q, g)
    return dq, dk, q * dq - k * dk


def _apply_backward(ctx, dy):
    D, x, g = ctx.saved_tensors          # y_ik = sum_j D_ij x_jk e_ijk
    dD = gated_scores(dy, x, g)
    dx = gated_apply_t(D, dy, g)
    return dD, dx, dy * gated_apply(D, x, g) - x * gated_apply_t(D, dy, g)


def _apply_t_backward(ctx, dy):
    D, x, g = ctx.saved_tensors          # y_jk = sum_i D_ij x_ik e_ijk
    dD = gated_scores(x, dy, g)
    dx = gated_apply(D, dy, g)
    return dD, dx, x * gated_apply(D, dy, g) - dy * gated_apply_t(D, x, g)


gated_scores.register_autograd(_scores_backward, setup_context=_setup)
gated_apply.register_autograd(_apply_backward, setup_context=_setup)
gated_apply_t.register_autograd(_apply_t_backward, setup_context=_setup)
