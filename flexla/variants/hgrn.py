"""HGRN (Qin et al., 2023, "Hierarchically Gated Recurrent Neural Network"): an elementwise
recurrence per channel, h_t = exp(g_t) h_{t-1} + x_t, output h_t. Each channel is a head of
simple GLA with K = V = 1 and q = k = 1 (flexla.ops.chunk_hgrn does that mapping).
"""
import flexla
from flexla.variants.simple_gla import SimpleGLA


@flexla.linear_attention(chunk_size=64)
class HGRN:
    intra = SimpleGLA.callbacks["intra"]
    update = SimpleGLA.callbacks["update"]
    merge = SimpleGLA.callbacks["merge"]
