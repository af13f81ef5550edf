"""FLEXLA_AHEAD_TILES=1: loops over chunks load a chunk tile they only add to matrix products one
chunk ahead (codegen/kernels._added_to_products), and the gradients stay the same."""
import re

import pytest
import torch

from flexla.variants import get
from variant_cases import gradients, random_inputs


def _kernel(source: str, name: str) -> str:
    return source.split(f"def {name}(")[1].split("@triton.jit")[0]


def _ahead_tiles(kernel: str) -> set:
    """The 2-D tiles a kernel loads ahead (next_<var> at a [rows][:, None] * ... address)."""
    return set(re.findall(r"next_(\w+) = tl\.load\([^\n]*\[:, None\]", kernel))


def test_the_state_gradient_scan_loads_its_added_tile_ahead(monkeypatch):
    variant = get("delta_rule")
    monkeypatch.setenv("FLEXLA_MOVE_SCALES", "0")      # which can leave no such tile (scale_motion)
    monkeypatch.setenv("FLEXLA_AHEAD_TILES", "0")
    off = variant.compile().source
    monkeypatch.setenv("FLEXLA_AHEAD_TILES", "1")
    on = variant.compile().source
    assert not _ahead_tiles(_kernel(off, "bwd_states"))
    ahead = _ahead_tiles(_kernel(on, "bwd_states"))
    assert len(ahead) == 1                       # the staged term of k dS + A^T do
    (tile,) = ahead
    assert re.search(rf"= \(\w+ \+ {tile}\)|= \({tile} \+ \w+\)", _kernel(on, "bwd_states"))
    # the forward scan's u is subtracted from a product, not added: left to Triton's pipeliner
    assert not _ahead_tiles(_kernel(on, "chunk_states"))


def test_the_option_is_checked(monkeypatch):
    monkeypatch.setenv("FLEXLA_AHEAD_TILES", "yes")
    with pytest.raises(ValueError, match="FLEXLA_AHEAD_TILES must be 0 or 1"):
        get("delta_rule").compile()


@pytest.mark.parametrize("name", ["delta_rule", "gated_delta_rule", "kda"])
def test_tiles_loaded_ahead_give_the_same_gradients(name, monkeypatch):
    variant = get(name)
    (q, k, v), _, h0 = random_inputs(name, 1, 37, 2, 16, 24)   # 37: a partial last chunk
    k = torch.nn.functional.normalize(k, dim=-1)        # unit keys, betas in (0, 1), log decays
    beta = torch.rand(1, 37, 2, generator=torch.Generator().manual_seed(1))
    decay = torch.nn.functional.logsigmoid(torch.randn(1, 37, 2, *([16] if name == "kda" else []),
                                                       generator=torch.Generator().manual_seed(2)) + 2) / 4
    extras = [beta] if name == "delta_rule" else [decay, beta]
    inputs = [q, k, v, *extras, h0]
    old = variant.schedule, variant.chunk_size
    variant.schedule, variant.chunk_size = "chunk", 16
    try:
        monkeypatch.setenv("FLEXLA_MOVE_SCALES", "0")  # which can leave no such tile (scale_motion)
        monkeypatch.setenv("FLEXLA_AHEAD_TILES", "0")
        before = gradients(variant, inputs)
        monkeypatch.setenv("FLEXLA_AHEAD_TILES", "1")
        assert _ahead_tiles(_kernel(variant.compile().source, "bwd_states"))
        after = gradients(variant, inputs)
    finally:
        variant.schedule, variant.chunk_size = old
    for a, b in zip(after, before):
        assert torch.equal(a, b)
