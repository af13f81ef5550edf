"""A gradient kernel that mixes no lanes along V (the dv kernel of a split gradient) may give each
program a slice of V (runtime/launch.grad_launch): the gradients are the same as with V whole."""
import pytest
import torch

from flexla.runtime import launch
from flexla.variants import get
from variant_cases import random_inputs


def _grads(variant, inputs):
    xs = [x.detach().clone().requires_grad_() for x in inputs]
    o, ht = variant(*xs[:-1], initial_state=xs[-1], output_final_state=True)
    ((o * torch.linspace(-1, 1, o.shape[-1])).sum() + ht.square().sum()).backward()
    return [x.grad for x in xs]


def test_only_kernels_that_keep_v_lanes_apart_may_split_v():
    meta = get("retention").compile().meta
    assert meta["v_split_grads"] == ["bwd_grads_dv"]              # dq/dk/d_gamma contract V: whole
    assert get("rwkv6").compile().meta["v_split_grads"] == []      # its du sums over V
    assert get("delta_rule").compile().meta["v_split_grads"] == []  # one gradient kernel, dq contracts V


@pytest.mark.parametrize("name", ["retention", "gla"])
def test_v_slices_give_the_same_gradients(name, monkeypatch, rel):
    variant = get(name)
    (q, k, v), extras, h0 = random_inputs(name, 1, 37, 2, 16, 40)
    slices = []
    original = launch.grad_launch

    def noted(*a):
        L = original(*a)
        slices.append(L.NV)
        return L
    monkeypatch.setattr(launch, "grad_launch", noted)
    old = variant.schedule, variant.chunk_size
    variant.schedule, variant.chunk_size = "chunk", 16
    try:
        whole = _grads(variant, [q, k, v, *extras, h0])
        assert set(slices) == {1}
        monkeypatch.setattr(launch, "GRAD_MAX_BV", 16)            # V = 40: slices of 16, the last masked
        monkeypatch.setattr(launch, "NARROW_TILES", True)
        sliced = _grads(variant, [q, k, v, *extras, h0])
    finally:
        variant.schedule, variant.chunk_size = old
    assert 3 in slices
    for a, b in zip(sliced, whole):
        assert rel(a, b) < 1e-6
