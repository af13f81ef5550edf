"""torch.autograd.gradcheck (fast mode: random projections, so it stays quick) in float64: the interpreter runs the generated kernels with float64
values and accumulators (ACC = tl.float64), so finite differences are meaningful."""
import pytest
import torch

from flexla.variants import get
from test_unseen_variants import NormalisedOutput
from variant_cases import random_inputs


@pytest.mark.parametrize("name", ["simple_gla", "gla", "retention", "normalised_output"])
@pytest.mark.parametrize("schedule", ["fused", "chunk"])
def test_gradcheck(name, schedule):
    B, T, H, K, V = 1, 19, 1, 16, 16    # two chunks of 16, the second partial
    if name == "normalised_output":
        variant, (q, k, v), extras, h0 = NormalisedOutput, *random_inputs("linear_attn", B, T, H, K, V)
    else:
        variant, ((q, k, v), extras, h0) = get(name), random_inputs(name, B, T, H, K, V)
    variant.schedule = schedule
    old, variant.chunk_size = variant.chunk_size, 16
    try:
        xs = [x.double().requires_grad_() for x in (q, k, v, *extras, h0)]
        fn = lambda *xs: variant(*xs[:-1], initial_state=xs[-1], output_final_state=True)
        assert torch.autograd.gradcheck(fn, xs, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)
    finally:
        variant.chunk_size = old
