"""flexla.ops against the float64 recurrences written to FLA 0.6's conventions."""
import pytest
import torch
import torch.nn.functional as F

from flexla import ops
from recurrences import gla_ref, linear_attn_ref, retention_ref, simple_gla_ref

B, T, H, K, V = 2, 45, 2, 32, 16
TOL = 1e-5


def inputs(seed=0, b=B, t=T):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen)
    return dict(q=r(b, t, H, K), k=r(b, t, H, K), v=r(b, t, H, V), h0=r(b, H, K, V),
                g=F.logsigmoid(r(b, t, H) + 2), gk=F.logsigmoid(r(b, t, H, K) + 2) / 4,
                g_gamma=-torch.rand(H, generator=gen) / 8)


@pytest.mark.parametrize("normalize", [False, True])
def test_chunk_linear_attn(normalize, rel):
    x = inputs()
    if normalize:   # the normaliser q . sum(k) must stay away from 0: positive features, as in practice
        x["q"], x["k"] = x["q"].abs(), x["k"].abs()
    o, st = ops.chunk_linear_attn(x["q"], x["k"], x["v"], initial_state=x["h0"], output_final_state=True,
                                  normalize=normalize)
    ro, rst = linear_attn_ref(x["q"], x["k"], x["v"], initial_state=x["h0"], output_final_state=True,
                              normalize=normalize)
    assert rel(o, ro) < TOL
    if normalize:
        assert rel(st[0], rst[0]) < TOL and rel(st[1], rst[1]) < TOL
    else:
        assert rel(st, rst) < TOL


def test_chunk_retention(rel):
    x = inputs(1)
    o, st = ops.chunk_retention(x["q"], x["k"], x["v"], scale=0.2, initial_state=x["h0"], output_final_state=True)
    ro, rst = retention_ref(x["q"], x["k"], x["v"], scale=0.2, initial_state=x["h0"], output_final_state=True)
    assert rel(o, ro) < TOL and rel(st, rst) < TOL


@pytest.mark.parametrize("gates", ["g", "g_gamma", "both", "none"])
def test_chunk_simple_gla(gates, rel):
    x = inputs(2)
    kw = dict(g=x["g"] if gates in ("g", "both") else None, g_gamma=x["g_gamma"] if gates in ("g_gamma", "both") else None)
    o, st = ops.chunk_simple_gla(x["q"], x["k"], x["v"], **kw, initial_state=x["h0"], output_final_state=True)
    ro, rst = simple_gla_ref(x["q"], x["k"], x["v"], **kw, initial_state=x["h0"], output_final_state=True)
    assert rel(o, ro) < TOL and rel(st, rst) < TOL


def test_chunk_gla(rel):
    x = inputs(3)
    o, st = ops.chunk_gla(x["q"], x["k"], x["v"], x["gk"], initial_state=x["h0"], output_final_state=True)
    ro, rst = gla_ref(x["q"], x["k"], x["v"], x["gk"], initial_state=x["h0"], output_final_state=True)
    assert rel(o, ro) < TOL and rel(st, rst) < TOL


def test_varlen_cu_seqlens(rel):
    x = inputs(4, b=1, t=70)
    cu = torch.tensor([0, 13, 50, 70])
    h0 = torch.randn(3, H, K, V)
    o, st = ops.chunk_gla(x["q"], x["k"], x["v"], x["gk"], initial_state=h0, output_final_state=True, cu_seqlens=cu)
    ro, rst = gla_ref(x["q"], x["k"], x["v"], x["gk"], initial_state=h0, output_final_state=True, cu_seqlens=cu)
    assert st.shape == (3, H, K, V)
    assert rel(o, ro) < TOL and rel(st, rst) < TOL


def test_varlen_needs_batch_one():
    x = inputs()
    with pytest.raises(ValueError, match="batch size"):
        ops.chunk_gla(x["q"], x["k"], x["v"], x["gk"], cu_seqlens=torch.tensor([0, 5, T]))


def test_ops_train(rel):
    """Gradients through an FLA-compatible op, including the gate and g_gamma."""
    x = inputs(5)
    names = ["q", "k", "v", "g", "g_gamma"]

    def grads(fn, dtype):
        xs = {n: x[n].to(dtype).detach().requires_grad_() for n in names}
        o, _ = fn(xs["q"], xs["k"], xs["v"], g=xs["g"], g_gamma=xs["g_gamma"])
        (o * torch.linspace(-1, 1, o.numel()).reshape(o.shape).to(dtype)).sum().backward()
        return [xs[n].grad for n in names]

    for n, a, b in zip(names, grads(ops.chunk_simple_gla, torch.float32), grads(simple_gla_ref, torch.float64)):
        assert rel(a, b) < 1e-4, n


@pytest.mark.parametrize("schedule", ["fused", "chunk"])
def test_normalized_linear_attn_gradients_and_key_sum_state(schedule, rel):
    """normalize=True divides in the kernels: output, both final states and every gradient,
    including the initial key sum's, against the float64 recurrence (T = 45: a partial chunk)."""
    from flexla.variants import get
    x = inputs(6)
    q, k = x["q"].abs(), x["k"].abs()       # a normaliser away from 0, as with positive features
    z0 = torch.rand(B, 1, H, K, generator=torch.Generator().manual_seed(6))
    leaves = [t.clone().requires_grad_() for t in (q, k, x["v"], x["h0"], z0)]
    variant = get("linear_attn_normalized")
    old, variant.schedule = variant.schedule, schedule
    try:
        o, (S, z) = ops.chunk_linear_attn(*leaves[:3], initial_state=tuple(leaves[3:]), output_final_state=True)
    finally:
        variant.schedule = old
    ref = [t.detach().double().requires_grad_() for t in leaves]
    ro, (rS, rz) = linear_attn_ref(*ref[:3], initial_state=tuple(ref[3:]), output_final_state=True)
    assert z.shape == (B, 1, H, K)
    assert rel(o, ro) < TOL and rel(S, rS) < TOL and rel(z, rz) < TOL
    w = torch.linspace(-1, 1, V)
    for out, s, zs in ((o, S, z), (ro, rS, rz)):
        ((out * w.to(out.dtype)).sum() + s.square().sum() + zs.square().sum()).backward()
    for a, b in zip(leaves, ref):
        assert rel(a.grad, b.grad) < 1e-4


def test_normalized_linear_attn_varlen_and_key_sum_alone(rel):
    x = inputs(7, b=1, t=70)
    q, k = x["q"].abs(), x["k"].abs()
    cu = torch.tensor([0, 13, 50, 70])
    z0 = torch.rand(3, 1, H, K, generator=torch.Generator().manual_seed(7))
    o, (S, z) = ops.chunk_linear_attn(q, k, x["v"], initial_state=(None, z0), output_final_state=True, cu_seqlens=cu)
    ro, (rS, rz) = linear_attn_ref(q, k, x["v"], initial_state=(None, z0), output_final_state=True, cu_seqlens=cu)
    assert S.shape == (3, H, K, V) and z.shape == (3, 1, H, K)
    assert rel(o, ro) < TOL and rel(S, rS) < TOL and rel(z, rz) < TOL
