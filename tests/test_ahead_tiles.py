"""Loops over chunks load a chunk tile they only add to matrix products one chunk ahead
(codegen/kernels._added_to_products). Their numbers are checked against float64 recurrences with
the rest of each variant's backward (test_delta_variants.py, test_more_variants.py: partial last chunks,
both schedules)."""
import re

import pytest

from flexla.variants import get
from variant_cases import kernel_of


def _ahead_tiles(kernel: str) -> set:
    """The 2-D tiles a kernel loads ahead (next_<var> at a [rows][:, None] * ... address)."""
    return set(re.findall(r"next_(\w+) = tl\.load\([^\n]*\[:, None\]", kernel))


@pytest.mark.parametrize("name", ["delta_rule", "kda"])
def test_the_state_gradient_scan_loads_its_added_tile_ahead(name):
    source = get(name).compile().source
    ahead = _ahead_tiles(kernel_of(source, "bwd_states"))
    assert len(ahead) == 1                       # the staged term of k dS + A^T do
    (tile,) = ahead
    assert re.search(rf"= \(\w+ \+ {tile}\)|= \({tile} \+ \w+\)", kernel_of(source, "bwd_states"))
    # the forward scan's u is subtracted from a product, not added: left to Triton's pipeliner
    assert not _ahead_tiles(kernel_of(source, "chunk_states"))
