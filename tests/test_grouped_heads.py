"""q and k shared by groups of heads (GQA), and Mamba2 built on it: no copies of B and C per head."""
import pytest
import torch
import torch.nn.functional as F

from flexla import ops
from flexla.variants import get
from recurrences import delta_rule_ref, mamba2_ref


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("schedule", ["fused", "chunk"])
def test_chunk_mamba2_matches_its_recurrence(groups, schedule, rel):
    get("mamba2").schedule = schedule
    gen = torch.Generator().manual_seed(groups)
    Bsz, T, H, P, N = 2, 45, 4, 24, 16
    r = lambda *s: torch.randn(*s, generator=gen)
    x, B, C = r(Bsz, T, H, P), r(Bsz, T, groups, N), r(Bsz, T, groups, N)
    dt = F.softplus(r(Bsz, T, H) - 1)
    A = -torch.rand(H, generator=gen) - 0.2
    h0 = r(Bsz, H, P, N)
    names = ["x", "dt", "A", "B", "C", "h0"]
    inputs = dict(x=x, dt=dt, A=A, B=B, C=C, h0=h0)

    def run(fn, dtype):
        xs = {n: inputs[n].to(dtype).detach().requires_grad_() for n in names}
        y, ht = fn(xs)
        g = torch.Generator().manual_seed(9)
        ((y * torch.randn(y.shape, generator=g).to(dtype)).sum()
         + (ht * torch.randn(ht.shape, generator=g).to(dtype)).sum()).backward()
        return y, ht, {n: xs[n].grad for n in names}

    y, ht, grads = run(lambda a: ops.chunk_mamba2(a["x"], a["dt"], a["A"], a["B"], a["C"], initial_state=a["h0"],
                                                  output_final_state=True), torch.float32)
    ry, rht, rgrads = run(lambda a: mamba2_ref(a["x"], a["dt"], a["A"], a["B"], a["C"], a["h0"], True),
                          torch.float64)
    assert y.shape == (Bsz, T, H, P) and ht.shape == (Bsz, H, P, N)
    assert rel(y, ry) < 1e-5 and rel(ht, rht) < 1e-5
    for n in names:
        assert grads[n].shape == inputs[n].shape
        assert rel(grads[n], rgrads[n]) < 1e-4, f"d{n}: {rel(grads[n], rgrads[n])}"


def test_heads_must_be_a_multiple_of_the_qk_heads():
    from flexla import CallError
    from flexla.variants import get
    q = torch.randn(1, 8, 3, 16)
    with pytest.raises(CallError, match="multiple of q's and k's heads"):
        get("linear_attn")(q, q, torch.randn(1, 8, 4, 16))


@pytest.mark.parametrize("schedule", ["fused", "chunk"])
def test_shared_keys_with_staged_tensors(schedule, rel):
    """The delta rule stages w and u per value head (a prep kernel) while q and k are shared by
    two heads: outputs and gradients (dq, dk summed over the group) match the expanded recurrence."""
    gen = torch.Generator().manual_seed(0)
    B, T, H, K, V = 1, 70, 2, 16, 16
    q = torch.randn(B, T, 1, K, generator=gen)
    k = torch.nn.functional.normalize(torch.randn(B, T, 1, K, generator=gen), dim=-1)
    v, beta = torch.randn(B, T, H, V, generator=gen), torch.rand(B, T, H, generator=gen)
    variant = get("delta_rule")
    old, variant.schedule = variant.schedule, schedule
    try:
        xs = [t.clone().requires_grad_() for t in (q, k, v, beta)]
        o, _ = variant(*xs)
    finally:
        variant.schedule = old
    rs = [t.double().requires_grad_() for t in (q, k, v, beta)]
    ro, _ = delta_rule_ref(rs[0].expand(B, T, H, K), rs[1].expand(B, T, H, K), rs[2], rs[3])
    assert rel(o, ro) < 1e-5
    w = torch.randn(ro.shape, generator=gen, dtype=torch.float64)
    for a, b in zip(torch.autograd.grad((o * w.float()).sum(), xs), torch.autograd.grad((ro * w).sum(), rs)):
        assert rel(a, b) < 1e-5
