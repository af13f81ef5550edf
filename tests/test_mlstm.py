"""Two states at once (a matrix and a normaliser vector) and a merge that is nonlinear in both:
mLSTM with a sigmoid input gate against its token-by-token recurrence."""
import pytest
import torch
import torch.nn.functional as F

from flexla import CallError, ops
from flexla.variants import get
from recurrences import mlstm_ref as mlstm_recurrence


@pytest.mark.parametrize("schedule", ["fused", "chunk"])
@pytest.mark.parametrize("shape", [(2, 37, 2, 16, 24), (1, 130, 2, 40, 40)], ids=lambda s: "x".join(map(str, s)))
def test_mlstm_forward_and_gradients(schedule, shape, rel):
    get("mlstm").schedule = schedule
    B, T, H, K, V = shape
    gen = torch.Generator().manual_seed(T)
    r = lambda *s: torch.randn(*s, generator=gen)
    inputs = dict(q=r(B, T, H, K), k=r(B, T, H, K), v=r(B, T, H, V), i=r(B, T, H), f=r(B, T, H) + 3,
                  C0=r(B, H, K, V), n0=r(B, H, K))
    names = list(inputs)

    def run(fn, dtype):
        xs = {n: inputs[n].to(dtype).detach().requires_grad_() for n in names}
        o, (C, n) = fn(xs)
        g = torch.Generator().manual_seed(1)
        w = lambda t: torch.randn(t.shape, generator=g).to(dtype)
        ((o * w(o)).sum() + (C * w(C)).sum() + (n * w(n)).sum()).backward()
        return o, C, n, {k: xs[k].grad for k in names}

    o, C, n, grads = run(lambda x: ops.chunk_mlstm(x["q"], x["k"], x["v"], x["i"], x["f"],
                                                   initial_state=(x["C0"], x["n0"]), output_final_state=True),
                         torch.float32)
    ro, rC, rn, rgrads = run(lambda x: mlstm_recurrence(x["q"], x["k"], x["v"], x["i"], x["f"], x["C0"], x["n0"],
                                                        K ** -0.5), torch.float64)
    assert C.shape == (B, H, K, V) and n.shape == (B, H, K)
    assert rel(o, ro) < 1e-5 and rel(C, rC) < 1e-5 and rel(n, rn) < 1e-5
    for name in names:
        assert rel(grads[name], rgrads[name]) < 1e-4, f"d{name}: {rel(grads[name], rgrads[name])}"


def test_several_states_need_a_tuple():
    q = torch.randn(1, 8, 2, 16)
    z = torch.zeros(1, 8, 2)
    with pytest.raises(CallError, match="tuple of 2 tensors"):
        ops.chunk_mlstm(q, q, q, z, z, initial_state=torch.zeros(1, 2, 16, 16))
    with pytest.raises(CallError, match=r"expected \[1, 2, 16\]"):
        ops.chunk_mlstm(q, q, q, z, z, initial_state=(torch.zeros(1, 2, 16, 16), torch.zeros(1, 2, 15)))


def test_backward_reads_the_saved_output():
    """mLSTM's normalised merge needs o in its backward: the kernels read the forward's o
    (passes/forward_output.py) and the autograd function keeps it; a backward called without
    it says so rather than reading garbage."""
    from flexla.runtime import launch
    compiled = get("mlstm").compile()
    assert compiled.meta["bwd_reads_o"] and not get("gla").compile().meta["bwd_reads_o"]
    q, k, v = (torch.randn(1, 20, 1, 8) for _ in range(3))
    i, f = torch.randn(1, 20, 1), torch.randn(1, 20, 1) + 2
    eps = torch.full((1,), 1e-6)
    with pytest.raises(ValueError, match="reads the forward's output"):
        launch._backward(compiled, q, k, v, [i, f, eps], 0.3, None, torch.randn(1, 20, 1, 8), None, 16,
                         [True, True, False], "chunk", False)
