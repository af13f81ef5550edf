"""Retention (Sun et al., 2023, "Retentive Network"): a fixed decay gamma per head, which RetNet
sets to 1 - 2^(-5-h) for head h; the caller passes log(gamma) per head.

    S_t = gamma S_{t-1} + k_t^T v_t            o_t = q_t S_t
"""
import flexla
from flexla.variants.simple_gla import SimpleGLA


@flexla.linear_attention(chunk_size=64)
class Retention:
    def intra(q, k, v, log_gamma: "[]"):
        return SimpleGLA.callbacks["intra"](q, k, v, log_gamma.expand(q.shape[0]))

    def update(S, c):
        return S * c["decay"] + c["kv"]

    def merge(S, c):
        return c["o"] + c["qg"] @ S
