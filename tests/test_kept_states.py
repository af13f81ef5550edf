"""A chunk-parallel forward that autograd will differentiate keeps its chunk states (and what its
scan writes for the backward) where the backward holds them in the same dtype
(launch.KeptStates): the backward then skips the forward's scan and gives the same gradients as
recomputing."""
import pytest
import torch

from flexla.runtime import launch
from flexla.variants import get
from variant_cases import gradients, random_inputs


def _inputs(name):
    (q, k, v), extras, h0 = random_inputs(name, 1, 37, 2, 16, 24)
    if name == "delta_rule":           # unit keys, betas in (0, 1)
        k = torch.nn.functional.normalize(k, dim=-1)
        extras = [torch.rand(1, 37, 2)]
    return [q, k, v, *extras, h0]


def _counting_scans(monkeypatch):
    """Counts the forward scans the backward runs (launch.chunk_states: the recompute)."""
    calls = []
    original = launch.chunk_states
    monkeypatch.setattr(launch, "chunk_states", lambda *a, **kw: calls.append(1) or original(*a, **kw))
    return calls


@pytest.mark.parametrize("name,schedule", [("delta_rule", "chunk"),   # its scan writes u - w S for the backward
                                           ("linear_attn", "chunk"), ("linear_attn", "fused")])
def test_kept_states_give_the_recomputed_gradients(name, schedule, monkeypatch):
    variant = get(name)
    assert launch.keeps_states(variant.compile().meta)     # states in the same dtype both ways
    inputs = _inputs(name)
    old = variant.schedule, variant.chunk_size
    variant.schedule, variant.chunk_size = schedule, 16
    try:
        scans = _counting_scans(monkeypatch)
        kept = gradients(variant, inputs)
        kept_scans = len(scans)
        monkeypatch.setattr(launch, "KEEP_STATES", False)
        recomputed = gradients(variant, inputs)
    finally:
        variant.schedule, variant.chunk_size = old
    # the fused forward writes no per-chunk states, so its backward recomputes them either way
    assert kept_scans == (1 if schedule == "fused" else 0)
    assert len(scans) - kept_scans == 1
    for a, b in zip(kept, recomputed):
        assert torch.equal(a, b)


def test_states_kept_only_where_the_backward_holds_them_in_the_same_dtype(monkeypatch):
    """GLA's backward reads its states outside matrix products, so holds them in fp32 where its
    forward stores them in the input dtype: it keeps nothing and recomputes."""
    variant = get("gla")
    meta = variant.compile().meta
    assert meta["states_in_input_dtype"] != meta["bwd_states_in_input_dtype"]
    assert not launch.keeps_states(meta)
    (q, k, v), extras, h0 = random_inputs("gla", 1, 37, 2, 16, 24)
    old = variant.schedule, variant.chunk_size
    variant.schedule, variant.chunk_size = "chunk", 16
    try:
        scans = _counting_scans(monkeypatch)
        gradients(variant, [q, k, v, *extras, h0])
    finally:
        variant.schedule, variant.chunk_size = old
    assert len(scans) == 1


def test_kept_states_rebuild_from_what_autograd_saved():
    states, written = [torch.zeros(2, 3)], {5: torch.ones(4)}
    kept = launch.KeptStates(32, states, written)
    again = launch.KeptStates.rebuilt(kept.layout(), kept.tensors())
    assert again.chunk_size == 32 and again.states[0] is states[0] and again.scan_written[5] is written[5]


def test_an_extra_that_needs_no_gradient_is_left_out_of_the_backward(monkeypatch):
    """Retention's per-head decays as chunk_retention passes them (a tensor that requires no
    gradient): the backward computes no decay gradient, and without it holds its states in the
    input dtype, so the forward keeps them; q, k, v and h0 get the gradients of the full backward."""
    variant = get("retention")
    (q, k, v), extras, h0 = random_inputs("retention", 1, 37, 2, 16, 24)
    old = variant.schedule, variant.chunk_size
    variant.schedule, variant.chunk_size = "chunk", 16
    try:
        full = gradients(variant, [q, k, v, *extras, h0])          # every input requires a gradient
        scans = _counting_scans(monkeypatch)
        xs = [x.detach().clone().requires_grad_() for x in (q, k, v)]
        x0 = h0.detach().clone().requires_grad_()
        gamma = extras[0].detach().clone()                          # no gradient asked for
        o, ht = variant(*xs, gamma, initial_state=x0, output_final_state=True)
        ((o * torch.linspace(-1, 1, o.shape[-1])).sum() + ht.square().sum()).backward()
    finally:
        variant.schedule, variant.chunk_size = old
    assert full[3] is not None and gamma.grad is None
    assert len(scans) == 0                                          # the forward's states were kept
    for a, b in zip([*(x.grad for x in xs), x0.grad], [*full[:3], full[4]]):
        assert (a - b).norm() <= 1e-5 * b.norm()
    meta, = [c.meta for (roles, _), c in variant._compiled.items() if not roles[0].grad]
    assert meta["extra_grads"] == [False] and launch.keeps_states(meta)
    assert not any("d_log_gamma" in name for name in meta["kernels"])


def test_the_backward_also_times_the_chunk_the_forward_kept_its_states_at(monkeypatch):
    """On the GPU (faked) the forward may keep its states at twice the variant's chunk; the
    backward's search then times that chunk too, where it skips the forward's scan (last, so
    FLEXLA_TUNE=last takes it): no recompute, the same gradients."""
    monkeypatch.setattr(launch, "searches_chunk", lambda q, v, chunk, schedule: chunk >= 16)
    monkeypatch.setattr(launch, "_CHOSEN", {})
    monkeypatch.setattr(launch, "_FITTING_CHUNK", {})
    monkeypatch.setenv("FLEXLA_TUNE", "last")
    variant = get("linear_attn")
    inputs = _inputs("linear_attn")
    old = variant.schedule, variant.chunk_size
    variant.schedule, variant.chunk_size = "chunk", 16
    try:
        scans = _counting_scans(monkeypatch)
        kept_at_32 = gradients(variant, inputs)
        assert len(scans) == 0
        monkeypatch.setattr(launch, "KEEP_STATES", False)
        recomputed = gradients(variant, inputs)
        assert len(scans) > 0           # (the search's fit check at the last way runs it too)
    finally:
        variant.schedule, variant.chunk_size = old
    for a, b in zip(kept_at_32, recomputed):
        assert (a - b).norm() <= 1e-5 * b.norm()
