"""Per-chunk kernels store each output just after the line that computes it
(codegen/kernels._stored_when_computed, _outputs_early); the gradient kernels that walk V in a
loop keep their stores at the end."""
import re

from flexla.variants import get
from variant_cases import kernel_of


def _stored_after_computed(kernel: str) -> bool:
    """Whether every store of a computed value follows the line that computes it."""
    lines = [ln.strip() for ln in kernel.splitlines()]
    for i, ln in enumerate(lines):
        stored = re.match(r"tl\.store\(.*, \((\w+)\)\.to\(", ln)
        if stored and not any(prev.startswith(f"{stored[1]} = ") for prev in lines[i - 1:i]):
            return False
    return True


def test_the_prep_kernel_stores_each_tile_when_computed():
    source = get("kda").compile().source
    for name in ("chunk_prep", "bwd_prep", "chunk_output"):
        assert _stored_after_computed(kernel_of(source, name)), name
    # a transpose only stored follows what it transposes
    assert re.search(r"(\w+) = .*\n\s+transpose_\w+ = tl\.trans\(\1\)", kernel_of(source, "bwd_prep"))
    # the gradient kernel walks V in a loop, and stores what the loop sums after it
    assert not _stored_after_computed(kernel_of(source, "bwd_grads"))
