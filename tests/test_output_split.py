"""The per-chunk output kernel with and without a V split (runtime/launch.py, output_launch) gives
the same results; V = 72 makes the state kernel split V into two blocks of 64."""
import pytest
import torch

from flexla.runtime import launch
from flexla.variants import get
from recurrences import gla_ref


@pytest.mark.parametrize("split", ["0", "1"])
def test_output_kernel_v_split(split, monkeypatch, rel):
    monkeypatch.setattr(launch, "OUTPUT_V_SPLIT", split)
    gen = torch.Generator().manual_seed(11)
    B, T, H, K, V = 1, 70, 2, 16, 72
    q, k = torch.randn(B, T, H, K, generator=gen), torch.randn(B, T, H, K, generator=gen)
    v, h0 = torch.randn(B, T, H, V, generator=gen), torch.randn(B, H, K, V, generator=gen)
    g = torch.nn.functional.logsigmoid(torch.randn(B, T, H, K, generator=gen) + 2) / 4
    variant = get("gla")
    old, variant.schedule = variant.schedule, "chunk"
    try:
        o, ht = variant(q, k, v, g, initial_state=h0, output_final_state=True)
    finally:
        variant.schedule = old
    ro, rht = gla_ref(q, k, v, g, initial_state=h0, output_final_state=True)
    assert rel(o, ro) < 1e-5 and rel(ht, rht) < 1e-5
