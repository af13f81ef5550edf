"""flexla.gated_scores: the pairwise-gated score matrix, its custom-op gradients, and the GLA
variant built on it staying finite and exact for any gate strength."""
import pytest
import torch

from flexla import ops
from flexla.frontend.primitives import gated_apply, gated_apply_t, gated_scores
from recurrences import gla_ref


def test_gated_scores_definition_and_gradients():
    gen = torch.Generator().manual_seed(0)
    C, K = 7, 5
    r = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)
    q, k = r(C, K), r(C, K)
    g = (-torch.rand(C, K, generator=gen, dtype=torch.float64)).cumsum(0)
    A = gated_scores(q, k, g)
    for i in range(C):
        for j in range(C):
            want = (q[i] * k[j] * (g[i] - g[j]).exp()).sum() if j <= i else 0.0
            assert abs(A[i, j] - want) < 1e-12
    D = r(C, C).tril()
    for fn, args in ((gated_scores, (q, k, g)), (gated_apply, (D, r(C, K), g)), (gated_apply_t, (D, r(C, K), g))):
        assert torch.autograd.gradcheck(fn, [a.clone().requires_grad_() for a in args])


@pytest.mark.parametrize("gate", [-10.0, -3.0, -1e-4], ids=["g=-10", "g=-3", "g=0"])
@pytest.mark.parametrize("schedule", ["fused", "chunk"])
def test_gla_any_gate_strength(gate, schedule, rel):
    """A 64-token chunk of per-key log gates near -10 used to overflow exp(-G) in fp32. The three
    strengths take the helpers' three paths: near 0, one product through the chunk's middle row;
    -3, 16-row blocks with one product inside each; -10, blocks with pairwise exponents inside."""
    check_gla(gate, schedule, 64, rel)


@pytest.mark.parametrize("chunk_size", [16, 32, 128])
def test_gla_other_chunk_sizes(chunk_size, rel):
    """The scores are built from 16-row blocks: one block, two, and eight of them."""
    check_gla(-3.0, "chunk", chunk_size, rel)


def check_gla(gate, schedule, chunk_size, rel):
    from flexla.variants import get
    variant = get("gla")
    variant.schedule, old, variant.chunk_size = schedule, variant.chunk_size, chunk_size
    gen = torch.Generator().manual_seed(1)
    B, T, H, K, V = 1, 100, 2, 16, 16
    r = lambda *s: torch.randn(*s, generator=gen)
    x = dict(q=r(B, T, H, K), k=r(B, T, H, K), v=r(B, T, H, V), g=gate * (0.5 + torch.rand(B, T, H, K, generator=gen)),
             h0=r(B, H, K, V))
    names = list(x)

    def run(fn, dtype):
        xs = {n: x[n].to(dtype).detach().requires_grad_() for n in names}
        o, ht = fn(xs["q"], xs["k"], xs["v"], xs["g"], initial_state=xs["h0"], output_final_state=True)
        w = torch.linspace(-1, 1, o.numel()).reshape(o.shape).to(dtype)
        ((o * w).sum() + ht.sum()).backward()
        return o, ht, {n: xs[n].grad for n in names}

    try:
        o, ht, grads = run(ops.chunk_gla, torch.float32)
    finally:
        variant.chunk_size = old
    ro, rht, rgrads = run(gla_ref, torch.float64)
    assert rel(o, ro) < 1e-5 and rel(ht, rht) < 1e-5          # rel() fails on NaN
    for n in names:
        assert torch.isfinite(grads[n]).all()
        # with strong decay dg is a reverse cumulative sum of terms that largely cancel (see
        # test_delta_variants), so fp32 keeps fewer of its digits
        tol = 1e-3 if n == "g" and gate <= -3 else 1e-4
        assert rel(grads[n], rgrads[n]) < tol, f"d{n}: {rel(grads[n], rgrads[n])}"
