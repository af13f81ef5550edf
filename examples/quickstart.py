"""flexla in one page: define a linear-attention variant as three callbacks, run its compiled
kernels, check them against a token-by-token float64 recurrence, and find the generated source.

Runs on a CUDA GPU when there is one, otherwise on the CPU under Triton's interpreter (slow, so
the shapes are tiny there).
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")     # must be set before triton is imported

import torch.nn.functional as F  # noqa: E402

import flexla  # noqa: E402


@flexla.linear_attention(chunk_size=64)
class GatedLinearAttention:
    """S_t = exp(g_t) S_{t-1} + k_t^T v_t,  o_t = q_t S_t   (one log-gate g per token and head)"""

    def intra(q, k, v, g: "[C]"):                      # tiles of one chunk of one head
        g = g.cumsum(0)                                 # in-chunk cumulative log decay
        A = ((q @ k.T) * (g[:, None] - g[None, :]).tril().exp()).tril()
        return dict(o=A @ v, qg=q * g.exp()[:, None],
                    kv=(k * (g[-1] - g).exp()[:, None]).T @ v, decay=g[-1].exp())

    def update(S, c):                                   # state leaving the chunk: affine in S
        return S * c["decay"] + c["kv"]

    def merge(S, c):                                    # output of the chunk
        return c["o"] + c["qg"] @ S


def recurrence(q, k, v, g, h0):
    """The same model, one token at a time, in float64."""
    q, k, v, g, S = q.double() * q.shape[-1] ** -0.5, k.double(), v.double(), g.double(), h0.double()
    out = []
    for t in range(q.shape[1]):
        S = g[:, t].exp()[..., None, None] * S + k[:, t, ..., :, None] * v[:, t, ..., None, :]
        out.append(torch.einsum("bhk,bhkv->bhv", q[:, t], S))
    return torch.stack(out, 1), S


def main():
    gpu = torch.cuda.is_available()
    device, dtype = ("cuda", torch.bfloat16) if gpu else ("cpu", torch.float32)
    B, T, H, D = (4, 1000, 8, 128) if gpu else (2, 100, 2, 32)
    torch.manual_seed(0)
    q, k, v = (torch.randn(B, T, H, D, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
    g = F.logsigmoid(torch.randn(B, T, H, device=device) + 3).requires_grad_()
    h0 = torch.randn(B, H, D, D, device=device)

    o, ht = GatedLinearAttention(q, k, v, g, initial_state=h0, output_final_state=True)
    o.float().square().sum().backward()                 # the backward is derived from the callbacks

    ro, rht = recurrence(q.detach(), k.detach(), v.detach(), g.detach(), h0)
    err = lambda a, b: ((a.double() - b).norm() / b.norm()).item()
    print(f"device: {device} ({dtype}), B={B} T={T} H={H} D={D}")
    print(f"output      rel. error vs float64 recurrence: {err(o, ro):.2e}")
    print(f"final state rel. error vs float64 recurrence: {err(ht, rht):.2e}")
    print(f"gradients: dq {tuple(q.grad.shape)}, dg {tuple(g.grad.shape)}")
    tol = 2e-2 if gpu else 1e-4
    assert err(o, ro) < tol and err(ht, rht) < tol, "mismatch"
    print(f"generated Triton source (forward and backward kernels): {GatedLinearAttention.source_path()}")
    print("print it with GatedLinearAttention.source(), or for a shipped variant: python -m flexla show simple_gla")


if __name__ == "__main__":
    main()
