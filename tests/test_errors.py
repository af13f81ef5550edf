"""Every user error names the callback or argument, the line, and what to do instead."""
import pytest
import torch
import torch.nn.functional as F

import flexla
from flexla import CallbackError, CallError
from flexla.variants import get


def make(update=None, intra=None, merge=None):
    """Linear attention with some of its callbacks replaced."""
    callbacks = {**get("linear_attn").callbacks}
    callbacks.update({n: fn for n, fn in (("update", update), ("intra", intra), ("merge", merge)) if fn})
    return flexla.linear_attention(type("Variant", (), callbacks))


def qkv(B=1, T=20, H=2, K=16, V=16, dtype=torch.float32):
    return torch.randn(B, T, H, K, dtype=dtype), torch.randn(B, T, H, K, dtype=dtype), torch.randn(B, T, H, V, dtype=dtype)


def test_update_not_affine_names_the_line():
    def update(S, c):
        return S * S.exp() + c["kv"]   # the offending line
    with pytest.raises(CallbackError) as e:
        make(update=update)(*qkv())
    msg = str(e.value)
    assert "`update`" in msg and "not affine" in msg
    assert "test_errors.py" in msg and "S * S.exp()" in msg
    assert "merge" in msg   # says where nonlinear uses of S may go


def test_unsupported_op_names_the_callback_and_line():
    def intra(q, k, v):
        return dict(o=(q @ k.T).sin().tril() @ v, q=q, kv=k.T @ v)
    with pytest.raises(CallbackError) as e:
        make(intra=intra)(*qkv())
    msg = str(e.value)
    assert "`intra`" in msg and "aten.sin" in msg and "not supported" in msg and ".sin()" in msg
    assert "what to do" in msg


def test_size_dependent_number_is_rejected():
    def intra(q, k, v):
        return dict(o=(q @ k.T).tril() @ v * k.shape[1] ** -0.5, q=q, kv=k.T @ v)
    with pytest.raises(CallbackError, match="depends on the tile sizes"):
        make(intra=intra)(*qkv())


def test_intra_must_return_a_dict():
    with pytest.raises(CallbackError, match="intra returned"):
        make(intra=lambda q, k, v: q @ k.T)(*qkv())


def test_merge_must_return_c_by_v():
    with pytest.raises(CallbackError, match=r"merge returned \[29, 31\]"):
        make(merge=lambda S, c: c["q"])(*qkv())


def test_tensor_error_in_callback_points_at_the_line():
    def merge(S, c):
        return c["o"] + S @ c["q"]   # wrong order
    with pytest.raises(CallbackError) as e:
        make(merge=merge)(*qkv())
    assert "`merge`" in str(e.value) and "test_errors.py" in str(e.value)


@pytest.mark.parametrize("bad,match", [
    (lambda q, k, v: (q[0], k, v), "4-D tensor"),
    (lambda q, k, v: (q, k[:, :, :1], v), "k has shape"),
    (lambda q, k, v: (q, k, v[:, :5]), "v has shape"),
    (lambda q, k, v: (q, k.half(), v), "dtypes"),
    (lambda q, k, v: (q.bfloat16(), k.bfloat16(), v.bfloat16()), "no bf16"),
    (lambda q, k, v: (q.int(), k.int(), v.int()), "dtypes"),
    (lambda q, k, v: (q, k.to("meta"), v), "different devices"),
])
def test_call_checks(bad, match):
    with pytest.raises(CallError, match=match):
        get("linear_attn")(*bad(*qkv()))


def test_extra_count_and_shape():
    q, k, v = qkv()
    with pytest.raises(CallError, match="got 0 extra inputs, but intra takes 1"):
        get("simple_gla")(q, k, v)
    with pytest.raises(CallError, match=r"extra input `g` has shape \[1, 20\]"):
        get("simple_gla")(q, k, v, torch.zeros(1, 20))
    with pytest.raises(CallError, match=r"declares its tile as \[C\].*\[1, 20, 2\]"):
        get("simple_gla")(q, k, v, torch.zeros(2))


def test_initial_state_shape():
    with pytest.raises(CallError, match="initial_state has shape"):
        get("linear_attn")(*qkv(), initial_state=torch.zeros(1, 2, 16))


def test_cpu_tensors_without_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(CallError, match="TRITON_INTERPRET=1"):
        get("linear_attn")(*qkv())


def test_bad_options():
    with pytest.raises(ValueError, match="power of two"):
        flexla.linear_attention(chunk_size=48)(type("X", (), {}))
    with pytest.raises(CallbackError, match="has no `intra`"):
        flexla.linear_attention(type("X", (), {}))


def test_three_dimensional_tile_names_the_line():
    def intra(q, k, v):
        A = (q[:, None, :] * k[None, :, :]).sum(-1)     # a [C, C, K] intermediate
        return dict(o=A.tril() @ v, q=q, kv=k.T @ v)
    with pytest.raises(CallbackError) as e:
        make(intra=intra)(*qkv())
    assert "3-D tile" in str(e.value) and "q[:, None, :] * k[None, :, :]" in str(e.value)


def test_in_place_and_composite_ops_in_the_backward(rel):
    """abs, clamp with two bounds, silu and tanh need sgn, logical_and_ and in-place ops in their vjp."""
    def intra(q, k, v):
        q = F.silu(q).clamp(-2, 2) + torch.tanh(k).abs()
        return dict(o=(q @ k.T).tril() @ v, q=q, kv=k.T @ v)
    variant = make(intra=intra)
    xs = [x.requires_grad_() for x in qkv()]
    o, _ = variant(*xs)
    o.square().sum().backward()
    ref = [x.detach().double().requires_grad_() for x in xs]
    from eager import run_eager
    eo, _ = run_eager(variant, *ref)
    eo.square().sum().backward()
    assert rel(o, eo) < 1e-5
    for a, b in zip(xs, ref):
        assert rel(a.grad, b.grad) < 1e-4


def test_a_call_like_an_earlier_one_skips_the_checks_and_any_other_is_checked():
    """Checks, roles and the compiled module are kept per call signature (shapes, dtypes,
    devices): a call that differs from a good one in any of them is checked again."""
    variant = get("simple_gla")
    q, k, v = qkv()
    g = torch.zeros(1, 20, 2)
    variant(q, k, v, g)
    variant(q, k, v, g)
    with pytest.raises(CallError, match="dtypes"):
        variant(q, k.half(), v, g)
    with pytest.raises(CallError, match=r"extra input `g` has shape \[1, 20\]"):
        variant(q, k, v, torch.zeros(1, 20))
    with pytest.raises(CallError, match="initial_state has shape"):
        variant(q, k, v, g, initial_state=torch.zeros(1, 2, 16))
    with pytest.raises(CallError, match="4-D tensor"):
        variant(q[0], k, v, g)
    with pytest.raises(CallError, match="extra input `g` is a float"):      # while q asks for gradients
        variant(q.requires_grad_(), k, v, 0.5)
