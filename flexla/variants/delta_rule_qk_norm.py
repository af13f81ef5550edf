"""DeltaNet with q and k L2-normalised inside the kernel (FLA's use_qk_l2norm_in_kernel=True):
q <- scale * q / sqrt(|q|^2 + 1e-6), k <- k / sqrt(|k|^2 + 1e-6), then the delta rule. The scale
comes per head (q_scale [H]) because flexla applies its own scale before intra, where the
normalisation would undo it; call it with scale=1.
"""
import flexla
from flexla.variants.delta_rule import DeltaNet


@flexla.linear_attention(chunk_size=64)
class DeltaNetQKNorm:
    def intra(q, k, v, beta: "[C]", q_scale: "[]"):
        q, k = flexla.l2norm(q) * q_scale, flexla.l2norm(k)
        return DeltaNet.callbacks["intra"](q, k, v, beta)

    update = DeltaNet.callbacks["update"]
    merge = DeltaNet.callbacks["merge"]
