"""KDA, RWKV-6 and HGRN (per-key and per-channel decays, built on flexla.gated_scores or on
simple GLA) against their float64 recurrences, with gates from near 0 to near -10."""
import pytest
import torch
import torch.nn.functional as F

from flexla import ops
from flexla.variants import get
from recurrences import hgrn_ref, kda_ref, rwkv6_ref

GATES = [-0.05, -10.0]


def check(ours, ref, inputs, rel, grad_tol=1e-4, strong=False):
    names = list(inputs)

    def run(fn, dtype):
        xs = {n: inputs[n].to(dtype).detach().requires_grad_() for n in names}
        o, ht = fn(**xs)
        gen = torch.Generator().manual_seed(2)
        w = lambda t: torch.randn(t.shape, generator=gen).to(dtype)
        ((o * w(o)).sum() + (ht * w(ht)).sum()).backward()
        return o, ht, {n: xs[n].grad for n in names}

    o, ht, grads = run(ours, torch.float32)
    ro, rht, rgrads = run(ref, torch.float64)
    assert rel(o, ro) < 1e-5 and rel(ht, rht) < 1e-5
    for n in names:
        assert torch.isfinite(grads[n]).all(), n
        # the gate's gradient under strong decay: see test_delta_variants
        tol = 1e-2 if strong and n in ("g", "w") else grad_tol
        assert rel(grads[n], rgrads[n]) < tol, f"d{n}: {rel(grads[n], rgrads[n])}"


@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("schedule", ["fused", "chunk"])
@pytest.mark.parametrize("l2", [False, True])
def test_kda(gate, schedule, l2, rel):
    get("kda").schedule = get("kda_qk_norm").schedule = schedule
    gen = torch.Generator().manual_seed(0)
    B, T, H, K, V = 1, 70, 2, 16, 24
    r = lambda *s: torch.randn(*s, generator=gen)
    k = r(B, T, H, K)
    x = dict(q=r(B, T, H, K), k=k if l2 else F.normalize(k, dim=-1), v=r(B, T, H, V),
             g=gate * torch.rand(B, T, H, K, generator=gen), beta=torch.rand(B, T, H, generator=gen),
             initial_state=r(B, H, K, V))
    kw = dict(output_final_state=True, use_qk_l2norm_in_kernel=l2)
    check(lambda **a: ops.chunk_kda(**a, **kw), lambda **a: kda_ref(**a, **kw), x, rel, strong=gate < -1)


@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("schedule", ["fused", "chunk"])
def test_rwkv6(gate, schedule, rel):
    get("rwkv6").schedule = schedule
    gen = torch.Generator().manual_seed(1)
    B, T, H, K, V = 2, 45, 2, 16, 32
    r = lambda *s: torch.randn(*s, generator=gen)
    x = dict(r=r(B, T, H, K), k=r(B, T, H, K), v=r(B, T, H, V), w=gate * torch.rand(B, T, H, K, generator=gen),
             u=r(H, K), initial_state=r(B, H, K, V))
    kw = dict(output_final_state=True)
    check(lambda **a: ops.chunk_rwkv6(**a, **kw), lambda **a: rwkv6_ref(**a, **kw), x, rel, strong=gate < -1)


@pytest.mark.parametrize("gate", GATES)
def test_hgrn(gate, rel):
    gen = torch.Generator().manual_seed(2)
    B, T, D = 2, 75, 24
    x = dict(x=torch.randn(B, T, D, generator=gen), g=gate * torch.rand(B, T, D, generator=gen),
             initial_state=torch.randn(B, D, generator=gen))
    kw = dict(output_final_state=True)
    check(lambda **a: ops.chunk_hgrn(**a, **kw), lambda **a: hgrn_ref(**a, **kw), x, rel, strong=gate < -1)
