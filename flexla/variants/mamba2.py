"""Mamba2 / SSD (Dao & Gu, 2024, "Transformers are SSMs"): simple GLA with the decay dt * A and
the input scaled by dt; B and C play k and q and may be shared by a group of heads.

    h_t = exp(dt_t A) h_{t-1} + dt_t B_t^T x_t            y_t = C_t h_t
"""
import flexla
from flexla.variants.simple_gla import SimpleGLA


@flexla.linear_attention(chunk_size=64)
class Mamba2:
    def intra(q, k, v, dt: "[C]", A: "[]"):
        return SimpleGLA.callbacks["intra"](q, k, v * dt[:, None], dt * A)

    update = SimpleGLA.callbacks["update"]
    merge = SimpleGLA.callbacks["merge"]
