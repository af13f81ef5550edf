"""How to call each shipped variant on random inputs, and its independent float64 recurrence."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from recurrences import gla_ref, linear_attn_ref, retention_log_decay, simple_gla_ref


def extras_for(name, B, T, H, K, V, gen):
    if name == "simple_gla":
        return [F.logsigmoid(torch.randn(B, T, H, generator=gen) + 2)]
    if name == "gla":
        return [F.logsigmoid(torch.randn(B, T, H, K, generator=gen) + 2) / 4]
    if name == "retention":
        return [retention_log_decay(H)]
    return []


def extras_at_37(name, K, gen):
    """Extra inputs and the initial states (beyond q, k, v and the [K, V] state) of the variants
    random_inputs has none for, at B = 1, T = 37, H = 2; None for the others."""
    r = lambda *s: torch.randn(*s, generator=gen)
    log_decay = F.logsigmoid(r(1, 37, 2, K) + 2) / 4
    beta = torch.rand(1, 37, 2, generator=gen)
    return {"rwkv6": [log_decay, 0.5 * r(2, K)], "delta_rule": [beta], "kda": [log_decay, beta],
            "gated_delta_rule": [F.logsigmoid(r(1, 37, 2) + 2), beta],
            "mlstm": [r(1, 37, 2), r(1, 37, 2) + 3, torch.full((2,), 1e-6)]}.get(name)


def kernel_of(source: str, name: str) -> str:
    """One kernel's text in a generated module's source."""
    return source.split(f"def {name}(")[1].split("@triton.jit")[0]


def gradients(variant, inputs, states=1):
    """The gradients of every input (the last `states` of them initial states) of a loss on the
    output and the final states, for tests that compare two ways of computing them."""
    xs = [x.detach().clone().requires_grad_() for x in inputs]
    h0 = xs[-1] if states == 1 else tuple(xs[-states:])
    o, ht = variant(*xs[:-states], initial_state=h0, output_final_state=True)
    ht = ht if states > 1 else (ht,)
    ((o * torch.linspace(-1, 1, o.shape[-1])).sum() + sum(h.square().sum() for h in ht)).backward()
    return [x.grad for x in xs]


def recurrence(name, q, k, v, extras, scale=None, initial_state=None):
    """(o, final_state) of the token-by-token float64 recurrence written from the paper."""
    kw = dict(scale=scale, initial_state=initial_state, output_final_state=True)
    if name == "simple_gla":
        return simple_gla_ref(q, k, v, g=extras[0], **kw)
    if name == "gla":
        return gla_ref(q, k, v, g=extras[0], **kw)
    if name == "retention":
        return simple_gla_ref(q, k, v, g_gamma=extras[0], **kw)
    return linear_attn_ref(q, k, v, normalize=False, **kw)


def random_inputs(name, B, T, H, K, V, seed=0, dtype=torch.float32, h0=True):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=gen)
    k = torch.randn(B, T, H, K, generator=gen)
    v = torch.randn(B, T, H, V, generator=gen)
    state = torch.randn(B, H, K, V, generator=gen) if h0 else None
    extras = extras_for(name, B, T, H, K, V, gen)
    return [x.to(dtype) for x in (q, k, v)], extras, state
