"""FLEXLA_EARLY_STORES=1: per-chunk kernels store each output just after the line that computes
it (codegen/kernels._stored_when_computed, _outputs_early), and compute the same numbers."""
import re

import pytest
import torch

from flexla.variants import get
from variant_cases import extras_at_37, gradients, kernel_of, random_inputs


def _stored_after_computed(kernel: str) -> bool:
    """Whether every store of a computed value follows the line that computes it."""
    lines = [ln.strip() for ln in kernel.splitlines()]
    for i, ln in enumerate(lines):
        stored = re.match(r"tl\.store\(.*, \((\w+)\)\.to\(", ln)
        if stored and not any(prev.startswith(f"{stored[1]} = ") for prev in lines[i - 1:i]):
            return False
    return True


def test_the_prep_kernel_stores_each_tile_when_computed(monkeypatch):
    variant = get("kda")
    monkeypatch.setenv("FLEXLA_EARLY_STORES", "0")
    late = variant.compile().source
    monkeypatch.setenv("FLEXLA_EARLY_STORES", "1")
    early = variant.compile().source
    assert not _stored_after_computed(kernel_of(late, "bwd_prep"))      # all at the end
    for name in ("chunk_prep", "bwd_prep", "chunk_output"):
        assert _stored_after_computed(kernel_of(early, name)), name
    # a transpose only stored now follows what it transposes
    assert re.search(r"(\w+) = .*\n\s+transpose_\w+ = tl\.trans\(\1\)", kernel_of(early, "bwd_prep"))


def test_the_option_is_checked(monkeypatch):
    monkeypatch.setenv("FLEXLA_EARLY_STORES", "yes")
    with pytest.raises(ValueError, match="FLEXLA_EARLY_STORES must be 0 or 1"):
        get("delta_rule").compile()


@pytest.mark.parametrize("name", ["delta_rule", "kda", "gla"])
def test_early_stores_give_the_same_outputs_and_gradients(name, monkeypatch):
    variant = get(name)
    (q, k, v), extras, h0 = random_inputs(name, 1, 37, 2, 16, 24)   # 37: a partial last chunk
    extras = extras_at_37(name, 16, torch.Generator().manual_seed(1)) or extras
    if name != "gla":
        k = torch.nn.functional.normalize(k, dim=-1)        # unit keys, as the delta rules expect
    inputs = [q, k, v, *extras, h0]
    old = variant.schedule, variant.chunk_size
    variant.schedule, variant.chunk_size = "chunk", 16
    run = lambda: [*variant(*inputs[:-1], initial_state=inputs[-1], output_final_state=True),
                   *gradients(variant, inputs)]
    try:
        monkeypatch.setenv("FLEXLA_EARLY_STORES", "0")
        before = run()
        monkeypatch.setenv("FLEXLA_EARLY_STORES", "1")
        after = run()
    finally:
        variant.schedule, variant.chunk_size = old
    for a, b in zip(after, before):
        assert torch.equal(a, b)
