"""KDA with q and k L2-normalised inside the kernel (FLA's use_qk_l2norm_in_kernel=True); the
scale comes per head (q_scale [H]), see delta_rule_qk_norm.
"""
import flexla
from flexla.variants.kda import KDA


@flexla.linear_attention(chunk_size=64)
class KDAQKNorm:
    def intra(q, k, v, g: "[C, K]", beta: "[C]", q_scale: "[]"):
        q, k = flexla.l2norm(q) * q_scale, flexla.l2norm(k)
        return KDA.callbacks["intra"](q, k, v, g, beta)

    update = KDA.callbacks["update"]
    merge = KDA.callbacks["merge"]
