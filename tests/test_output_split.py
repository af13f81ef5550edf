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


@pytest.mark.parametrize("name", ["linear_attn", "simple_gla", "delta_rule"])
def test_output_kernel_walking_k_in_slices(name, monkeypatch, rel):
    """Where K is wider than 128 the forward's search also times the output kernel that walks K
    in slices of 64 (tiling.k_loop); FLEXLA_TUNE=last takes it (the search is faked on, as on a
    GPU). K = 160: the last slice is partial. Same outputs and final states as the recurrence."""
    from recurrences import delta_rule_ref, linear_attn_ref, simple_gla_ref
    monkeypatch.setattr(launch, "searches_chunk", lambda q, v, chunk, schedule: chunk >= 32)
    monkeypatch.setattr(launch, "_CHOSEN", {})
    monkeypatch.setenv("FLEXLA_TUNE", "last")
    launched, real_run = [], launch.Launch.run

    def noting(self, kernel, grid, pointers):
        launched.append((kernel.__name__, self.consts["BK"]))
        return real_run(self, kernel, grid, pointers)
    monkeypatch.setattr(launch.Launch, "run", noting)
    gen = torch.Generator().manual_seed(5)
    B, T, H, K, V = 1, 100, 2, 160, 72
    q, k = torch.randn(B, T, H, K, generator=gen), torch.randn(B, T, H, K, generator=gen)
    v, h0 = torch.randn(B, T, H, V, generator=gen), torch.randn(B, H, K, V, generator=gen)
    extras, ref = [], linear_attn_ref
    if name == "simple_gla":
        extras, ref = [torch.nn.functional.logsigmoid(torch.randn(B, T, H, generator=gen) + 2) / 4], simple_gla_ref
    if name == "delta_rule":
        k = torch.nn.functional.normalize(k, dim=-1)
        extras, ref = [torch.rand(B, T, H, generator=gen)], delta_rule_ref
    variant = get(name)
    old, variant.schedule = variant.schedule, "chunk"
    try:
        o, ht = variant(q, k, v, *extras, initial_state=h0, output_final_state=True)
    finally:
        variant.schedule = old
    assert ("chunk_output_k_loop", 64) in launched and not any(n == "chunk_output" for n, _ in launched)
    kw = dict(normalize=False) if name == "linear_attn" else {}
    ro, rht = ref(q.double(), k.double(), v.double(), *(e.double() for e in extras), initial_state=h0.double(),
                  output_final_state=True, **kw)
    assert rel(o, ro) < 1e-5 and rel(ht, rht) < 1e-5
