"""The delta-rule family: a triangular solve inside intra, its derived backward, and the
FLA-compatible ops, against float64 token-by-token recurrences."""
import pytest
import torch
import torch.nn.functional as F

from flexla import ops
from flexla.variants import get
from recurrences import delta_rule_ref, gated_delta_rule_ref

TOL = 1e-5


def inputs(B, T, H, K, V, seed=0, gate_shift=2.0, normalised=True):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen)
    k = r(B, T, H, K)
    return dict(q=r(B, T, H, K), k=F.normalize(k, dim=-1) if normalised else k, v=r(B, T, H, V),
                g=F.logsigmoid(r(B, T, H) + gate_shift), beta=torch.rand(B, T, H, generator=gen),
                h0=r(B, H, K, V))


def run_grads(fn, x, names, dtype, gen_seed=5):
    xs = {n: x[n].to(dtype).detach().requires_grad_() for n in names}
    o, ht = fn(**xs)
    gen = torch.Generator().manual_seed(gen_seed)
    w_o, w_s = torch.randn(o.shape, generator=gen).to(dtype), torch.randn(ht.shape, generator=gen).to(dtype)
    ((o * w_o).sum() + (ht * w_s).sum()).backward()
    return o, ht, {n: xs[n].grad for n in names}


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("schedule", ["fused", "chunk"])
@pytest.mark.parametrize("shape", [(2, 37, 2, 16, 32), (1, 130, 2, 40, 24), (1, 1, 1, 16, 16)],
                         ids=lambda s: "x".join(map(str, s)))
def test_variant_forward_and_gradients(gated, schedule, shape, rel):
    x = inputs(*shape)
    variant = get("gated_delta_rule" if gated else "delta_rule")
    variant.schedule = schedule
    names = ["q", "k", "v", "beta", "h0"] + (["g"] if gated else [])

    def ours(q, k, v, beta, h0, g=None):
        extras = [g, beta] if gated else [beta]
        return variant(q, k, v, *extras, initial_state=h0, output_final_state=True)

    def ref(q, k, v, beta, h0, g=None):
        return gated_delta_rule_ref(q, k, v, g, beta, initial_state=h0, output_final_state=True)

    o, ht, grads = run_grads(ours, x, names, torch.float32)
    ro, rht, rgrads = run_grads(ref, x, names, torch.float64)
    assert rel(o, ro) < TOL and rel(ht, rht) < TOL
    for n in names:
        assert rel(grads[n], rgrads[n]) < 1e-4, f"d{n}: {rel(grads[n], rgrads[n])}"


@pytest.mark.parametrize("l2", [False, True])
def test_ops(l2, rel):
    x = inputs(2, 45, 2, 32, 16, seed=1, normalised=not l2)
    kw = dict(initial_state=x["h0"], output_final_state=True, use_qk_l2norm_in_kernel=l2, scale=0.3)
    o, ht = ops.chunk_delta_rule(x["q"], x["k"], x["v"], x["beta"], **kw)
    ro, rht = delta_rule_ref(x["q"], x["k"], x["v"], x["beta"], **kw)
    assert rel(o, ro) < TOL and rel(ht, rht) < TOL
    o, ht = ops.chunk_gated_delta_rule(x["q"], x["k"], x["v"], x["g"], x["beta"], **kw)
    ro, rht = gated_delta_rule_ref(x["q"], x["k"], x["v"], x["g"], x["beta"], **kw)
    assert rel(o, ro) < TOL and rel(ht, rht) < TOL


def test_ops_l2norm_gradients(rel):
    x = inputs(1, 40, 2, 16, 16, seed=2, normalised=False)
    names = ["q", "k", "v", "g", "beta", "h0"]
    kw = dict(output_final_state=True, use_qk_l2norm_in_kernel=True)
    f = lambda q, k, v, g, beta, h0: ops.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0, **kw)
    r = lambda q, k, v, g, beta, h0: gated_delta_rule_ref(q, k, v, g, beta, initial_state=h0, **kw)
    _, _, grads = run_grads(f, x, names, torch.float32)
    _, _, rgrads = run_grads(r, x, names, torch.float64)
    for n in names:
        assert rel(grads[n], rgrads[n]) < 1e-4, n


@pytest.mark.parametrize("gate", [-10.0, -1e-4], ids=["near-zero-decay", "no-decay"])
def test_extreme_gates_stay_finite(gate, rel):
    """A whole 64-token chunk of g near -10 (the state is wiped every step) or of g near 0."""
    x = inputs(1, 150, 2, 32, 32, seed=3)
    x["g"] = torch.full_like(x["g"], gate) + 1e-3 * torch.rand(x["g"].shape)
    names = ["q", "k", "v", "g", "beta", "h0"]
    f = lambda q, k, v, g, beta, h0: ops.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0,
                                                                output_final_state=True)
    r = lambda q, k, v, g, beta, h0: gated_delta_rule_ref(q, k, v, g, beta, initial_state=h0,
                                                          output_final_state=True)
    o, ht, grads = run_grads(f, x, names, torch.float32)
    ro, rht, rgrads = run_grads(r, x, names, torch.float64)
    assert rel(o, ro) < TOL and rel(ht, rht) < 1e-4          # rel() fails on any NaN
    for n in names:
        assert torch.isfinite(grads[n]).all(), n
        # dg is a reverse cumulative sum of terms that cancel to ~1e-4 of their size when every step
        # decays by e^-10, so fp32 keeps fewer of its digits; the others are as accurate as usual
        tol = 1e-2 if n == "g" else 1e-4
        assert rel(grads[n], rgrads[n]) < tol, f"d{n}: {rel(grads[n], rgrads[n])}"


@pytest.mark.parametrize("chunk_size", [16, 32, 128])
def test_other_chunk_sizes(chunk_size, rel):
    """The inverse is built from 16-row blocks: one block, two, and eight of them."""
    x = inputs(1, 150, 2, 16, 16, seed=3)
    variant = get("gated_delta_rule")
    old, variant.chunk_size = variant.chunk_size, chunk_size
    try:
        names = ["q", "k", "v", "g", "beta", "h0"]
        o, ht, grads = run_grads(lambda q, k, v, g, beta, h0: variant(q, k, v, g, beta, initial_state=h0,
                                                                      output_final_state=True), x, names, torch.float32)
    finally:
        variant.chunk_size = old
    ro, rht, rgrads = run_grads(lambda q, k, v, g, beta, h0: gated_delta_rule_ref(
        q, k, v, g, beta, initial_state=h0, output_final_state=True), x, names, torch.float64)
    assert rel(o, ro) < TOL and rel(ht, rht) < TOL
    for n in names:
        assert rel(grads[n], rgrads[n]) < 1e-4, f"d{n}: {rel(grads[n], rgrads[n])}"
