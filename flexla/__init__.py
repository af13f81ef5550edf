"""flexla: write a linear-attention variant as three PyTorch callbacks, get Triton kernels.

    @flexla.linear_attention(chunk_size=64)
    class SimpleGLA:
        def intra(q, k, v, g): ...      # everything inside one chunk
        def update(S, c): ...           # state leaving the chunk (affine in S)
        def merge(S, c): ...            # output of the chunk

    o, final_state = SimpleGLA(q, k, v, g, output_final_state=True)
"""
from .frontend.decorator import Variant, linear_attention
from .frontend.errors import CallbackError, CallError, FlexlaError
from .frontend.primitives import gated_scores, l2norm

__version__ = "0.1.0"
__all__ = ["linear_attention", "Variant", "gated_scores", "l2norm", "FlexlaError", "CallbackError", "CallError"]
