"""Test setup: generated kernels run under Triton's CPU interpreter, outputs are NaN-poisoned
before every launch, and the kernel cache lives in a fresh folder for the whole session."""
import os
import tempfile

os.environ.setdefault("TRITON_INTERPRET", "1")       # must precede the first `import triton`
os.environ["FLEXLA_POISON"] = "1"
os.environ.setdefault("FLEXLA_CACHE_DIR", tempfile.mkdtemp(prefix="flexla-test-cache-"))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


def rel_err(out, ref) -> float:
    """||out - ref|| / ||ref||, in float64; NaN anywhere fails loudly."""
    out, ref = out.detach().double(), ref.detach().double()
    assert not torch.isnan(out).any(), "NaN in the output (an element nobody wrote, or an overflow)"
    return ((out - ref).norm() / ref.norm().clamp_min(1e-30)).item()


@pytest.fixture
def rel():
    return rel_err
