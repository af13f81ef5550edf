"""Linear attention divided by the running key sum (FLA's `chunk_linear_attn` with normalize=True,
its default), in the kernels rather than after them.

    S_t = S_{t-1} + k_t^T v_t        z_t = z_{t-1} + k_t        o_t = q_t S_t / (q_t . z_t + 1e-10)
"""
import flexla


@flexla.linear_attention(chunk_size=64, state=("[K, V]", "[K]"))
class NormalizedLinearAttention:
    def intra(q, k, v):
        A = (q @ k.T).tril()
        return dict(o=A @ v, qz=A.sum(1), q=q, kv=k.T @ v, kz=k.sum(0))

    def update(S, c):
        kv, z = S
        return kv + c["kv"], z + c["kz"]

    def merge(S, c):
        kv, z = S
        return (c["o"] + c["q"] @ kv) / (c["qz"] + c["q"] @ z + 1e-10)[:, None]
