"""Every shipped variant against its independent float64 recurrence and against the eager
chunked run of its own callbacks: forward, final state and all gradients."""
import pytest
import torch

from eager import run_eager
from flexla import variants
from variant_cases import random_inputs, recurrence

NAMES = ["linear_attn", "retention", "simple_gla", "gla"]
SHAPES = [  # B, T, H, K, V: one token, odd lengths, odd head dim, several heads and batches
    (1, 1, 1, 16, 16),
    (2, 37, 2, 16, 32),
    (1, 130, 3, 40, 40),
    (2, 64, 2, 32, 24),
]
FP32_TOL = 1e-5


@pytest.fixture(params=["fused", "chunk"])
def schedule(request):
    return request.param


def get(name, schedule):
    v = variants.get(name)
    v.schedule = schedule
    return v


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_matches_recurrence(name, shape, schedule, rel):
    (q, k, v), extras, h0 = random_inputs(name, *shape, seed=hash(shape) % 1000)
    variant = get(name, schedule)
    o, ht = variant(q, k, v, *extras, initial_state=h0, output_final_state=True)
    ro, rht = recurrence(name, q, k, v, extras, initial_state=h0)
    assert o.dtype == v.dtype and ht.dtype == torch.float32
    assert rel(o, ro) < FP32_TOL
    assert rel(ht, rht) < FP32_TOL
    eo, eht = run_eager(variant, q, k, v, *extras, initial_state=h0)
    assert rel(o, eo) < FP32_TOL and rel(ht, eht) < FP32_TOL


@pytest.mark.parametrize("name", NAMES)
def test_output_kernel_with_its_loads_at_the_top(name, rel, monkeypatch):
    """The output kernel's tuned knob (runtime/tuning.OUTPUT_CANDIDATES): every load at the top
    instead of at its first reader; the same output."""
    monkeypatch.setenv("FLEXLA_KERNEL_CONFIG", "chunk_output=4x1x1")
    (q, k, v), extras, h0 = random_inputs(name, 1, 130, 3, 40, 40, seed=5)
    o, ht = get(name, "chunk")(q, k, v, *extras, initial_state=h0, output_final_state=True)
    ro, rht = recurrence(name, q, k, v, extras, initial_state=h0)
    assert rel(o, ro) < FP32_TOL and rel(ht, rht) < FP32_TOL


@pytest.mark.parametrize("name", NAMES)
def test_without_initial_state_and_final_state(name, schedule, rel):
    (q, k, v), extras, _ = random_inputs(name, 2, 37, 2, 16, 16, h0=False)
    o, ht = get(name, schedule)(q, k, v, *extras, scale=0.3)
    ro, _ = recurrence(name, q, k, v, extras, scale=0.3)
    assert ht is None
    assert rel(o, ro) < FP32_TOL


@pytest.mark.parametrize("name", NAMES)
def test_fp16_inputs(name, schedule, rel):
    """Half inputs: tensor-core operands and the states kept between kernels in fp16 where every
    reader casts them anyway; gradients included."""
    (q, k, v), extras, h0 = random_inputs(name, 1, 70, 2, 32, 32, dtype=torch.float16)
    xs = [x.detach().requires_grad_() for x in (q, k, v, *extras)]
    o, ht = get(name, schedule)(*xs, initial_state=h0, output_final_state=True)
    refs = [x.detach().double().requires_grad_() for x in xs]
    ro, rht = recurrence(name, refs[0], refs[1], refs[2], refs[3:], initial_state=h0.double())
    assert o.dtype == torch.float16
    assert rel(o, ro) < 5e-3 and rel(ht, rht) < 5e-3
    do = torch.randn(o.shape, generator=torch.Generator().manual_seed(3))
    for x, r, n in zip(torch.autograd.grad((o.float() * do).sum(), xs),
                       torch.autograd.grad((ro * do.double()).sum(), refs), ["q", "k", "v", "extra"] * 2):
        assert rel(x, r) < 5e-3, f"d{n}: {rel(x, r)}"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(2, 37, 2, 16, 32), (1, 130, 2, 40, 40)], ids=lambda s: "x".join(map(str, s)))
def test_gradients(name, shape, schedule, rel):
    """A loss on both o and the final state; gradients of every input, the gate and h0."""
    (q, k, v), extras, h0 = random_inputs(name, *shape, seed=7)
    per_head = name == "retention"   # a fixed decay: not a trained input, but its gradient must be right too
    inputs = [q, k, v, *extras, h0]
    gen = torch.Generator().manual_seed(1)
    do = torch.randn(shape[0], shape[1], shape[2], shape[4], generator=gen)
    dht = torch.randn(shape[0], shape[2], shape[3], shape[4], generator=gen)

    def grads(fn, dtype):
        xs = [x.detach().to(dtype).requires_grad_() for x in inputs]
        o, ht = fn(xs)
        ((o * do.to(dtype)).sum() + (ht * dht.to(dtype)).sum()).backward()
        return [x.grad for x in xs]

    variant = get(name, schedule)
    ours = grads(lambda xs: variant(*xs[:-1], initial_state=xs[-1], output_final_state=True), torch.float32)
    ref = grads(lambda xs: recurrence(name, xs[0], xs[1], xs[2], xs[3:-1], initial_state=xs[-1]), torch.float64)
    eager = grads(lambda xs: run_eager(variant, *xs[:-1], initial_state=xs[-1]), torch.float64)
    names = ["q", "k", "v"] + [f"extra{i}" for i in range(len(extras))] + ["h0"]
    for n, a, b, c in zip(names, ours, ref, eager):
        assert a.shape == b.shape, n
        tol = 1e-4 if per_head and n.startswith("extra") else FP32_TOL   # a sum over all B*T tokens
        assert rel(a, b) < tol, f"d{n} vs recurrence: {rel(a, b)}"
        assert rel(a, c) < tol, f"d{n} vs eager callbacks: {rel(a, c)}"
