"""Variants that flexla does not ship, defined only here: they must compile, match their own
token-by-token recurrences, and train."""
import pytest
import torch
import torch.nn.functional as F

import flexla


@flexla.linear_attention(chunk_size=16)
class GatedFeatureDecay:
    """phi(x) = elu(x) + 1 on q and k; per-token gate logsigmoid(a) plus a per-head decay w."""

    def intra(q, k, v, a, w):
        q, k = F.elu(q) + 1, F.elu(k) + 1
        g = (F.logsigmoid(a) + w).cumsum(0)
        A = ((q @ k.T) * (g[:, None] - g[None, :]).tril().exp()).tril()
        return dict(o=A @ v, qg=q * g.exp()[:, None], kv=(k * (g[-1] - g).exp()[:, None]).T @ v, d=g[-1].exp())

    def update(S, c):
        return c["d"] * S + c["kv"]

    def merge(S, c):
        return c["o"] + c["qg"] @ S


def gated_feature_decay_recurrence(q, k, v, a, w, scale, h0):
    B, T, H, K = q.shape
    S, out = h0.clone(), []
    for t in range(T):
        decay = (F.logsigmoid(a[:, t]) + w).exp()[..., None, None]
        S = decay * S + (F.elu(k[:, t]) + 1)[..., :, None] * v[:, t][..., None, :]
        out.append(torch.einsum("bhk,bhkv->bhv", F.elu(q[:, t] * scale) + 1, S))
    return torch.stack(out, 1), S


@flexla.linear_attention(chunk_size=16)
class NormalisedOutput:
    """Linear attention whose output row is divided by sqrt(1 + |h|^2): merge is nonlinear in S."""

    def intra(q, k, v):
        return dict(o=(q @ k.T).tril() @ v, q=q, kv=k.T @ v)

    def update(S, c):
        return S + c["kv"]

    def merge(S, c):
        h = c["o"] + c["q"] @ S
        return h / (1 + (h * h).sum(-1, keepdim=True)).sqrt()


def normalised_output_recurrence(q, k, v, scale, h0):
    S, out = h0.clone(), []
    for t in range(q.shape[1]):
        S = S + k[:, t][..., :, None] * v[:, t][..., None, :]
        h = torch.einsum("bhk,bhkv->bhv", q[:, t] * scale, S)
        out.append(h / (1 + (h * h).sum(-1, keepdim=True)).sqrt())
    return torch.stack(out, 1), S


def case(name, B=2, T=37, H=2, K=16, V=24, seed=0):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen)
    q, k, v, h0 = r(B, T, H, K), r(B, T, H, K), r(B, T, H, V), r(B, H, K, V) / 4
    if name == "gated":
        extras = [r(B, T, H) + 1, -torch.rand(H, generator=gen) / 4]
        return GatedFeatureDecay, [q, k, v, *extras, h0], \
            lambda q, k, v, a, w, h0: gated_feature_decay_recurrence(q, k, v, a, w, K ** -0.5, h0)
    return NormalisedOutput, [q, k, v, h0], lambda q, k, v, h0: normalised_output_recurrence(q, k, v, K ** -0.5, h0)


@pytest.mark.parametrize("name", ["gated", "normalised"])
@pytest.mark.parametrize("schedule", ["fused", "chunk"])
def test_unseen_variant_forward_and_gradients(name, schedule, rel):
    variant, inputs, recurrence = case(name)
    variant.schedule = schedule
    gen = torch.Generator().manual_seed(3)

    def run(fn, dtype):
        xs = [x.to(dtype).detach().requires_grad_() for x in inputs]
        o, ht = fn(*xs)
        w_o, w_s = torch.randn(o.shape, generator=gen).to(dtype), torch.randn(ht.shape, generator=gen).to(dtype)
        ((o * w_o).sum() + (ht * w_s).sum()).backward()
        return o, ht, [x.grad for x in xs]

    gen.manual_seed(3)
    o, ht, grads = run(lambda *xs: variant(*xs[:-1], initial_state=xs[-1], output_final_state=True), torch.float32)
    gen.manual_seed(3)
    ro, rht, rgrads = run(recurrence, torch.float64)
    assert rel(o, ro) < 1e-5 and rel(ht, rht) < 1e-5
    for i, (a, b) in enumerate(zip(grads, rgrads)):
        assert rel(a, b) < 1e-4, f"gradient of input {i}: {rel(a, b)}"


def test_nonlinear_merge_blocks_the_v_split():
    compiled = NormalisedOutput.compile([])
    assert compiled.meta["v_split"] is False
    assert "sum" in compiled.meta["v_split_blocker"]
    assert GatedFeatureDecay.compile(None if False else _roles()).meta["v_split"] is True


def _roles():
    from flexla.frontend.signature import Extra
    return [Extra("a", ("C",)), Extra("w", ())]
