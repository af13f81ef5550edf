"""Linear attention (Katharopoulos et al., 2020, "Transformers are RNNs").

    S_t = S_{t-1} + k_t^T v_t            o_t = q_t S_t
"""
import flexla


@flexla.linear_attention(chunk_size=64)
class LinearAttention:
    def intra(q, k, v):
        return dict(o=(q @ k.T).tril() @ v, q=q, kv=k.T @ v)

    def update(S, c):
        return S + c["kv"]

    def merge(S, c):
        return c["o"] + c["q"] @ S
