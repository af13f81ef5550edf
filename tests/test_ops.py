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
