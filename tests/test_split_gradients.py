"""The chunk-parallel backward with the gradient kernel split by outputs (passes/split_by_output.py)
and with the whole one give the same gradients; the split kernels are what runs off the GPU."""
import pytest
import torch

from flexla.runtime import launch
from flexla.variants import get
from variant_cases import extras_at_37, gradients, random_inputs


@pytest.mark.parametrize("name,mode", [("gla", "auto"), ("rwkv6", "auto"),   # rwkv6: split d_u per chunk
                                       ("delta_rule", "1"), ("kda", "1")])  # split though they share work
def test_split_and_whole_gradient_kernels_agree(name, mode, monkeypatch, rel):
    variant = get(name)
    monkeypatch.setenv("FLEXLA_SPLIT_GRADS", mode)       # part of the compiled module's key
    (q, k, v), extras, h0 = random_inputs(name, 1, 37, 2, 16, 24)
    extras = extras_at_37(name, 16, torch.Generator().manual_seed(1)) or extras
    if name in ("delta_rule", "kda"):     # unit keys
        k = torch.nn.functional.normalize(k, dim=-1)
    meta = variant.compile().meta
    assert meta["split_grad_kernels"]                                # these variants do split
    launched = []
    original = launch._backward

    def backward(*args, split, **kw):
        launched.append(split)
        return original(*args, split=split, **kw)
    old = variant.schedule, variant.chunk_size
    variant.schedule, variant.chunk_size = "chunk", 16
    try:
        monkeypatch.setattr(launch, "_backward", lambda *a, **kw: backward(*a[:-1], split=a[-1], **kw))
        split = gradients(variant, [q, k, v, *extras, h0])
        monkeypatch.setattr(launch, "_backward", lambda *a, **kw: backward(*a[:-1], split=False, **kw))
        whole = gradients(variant, [q, k, v, *extras, h0])
    finally:
        variant.schedule, variant.chunk_size = old
    assert launched == [True, False]
    for a, b in zip(split, whole):
        assert rel(a, b) < 1e-5
