"""A prep kernel that contracts over K may walk K in slices, several times where lanes depend on
what a walk adds up (passes/tiling.prep_k_walks: KDA's gated key scores add up over the slices,
their inverse follows, then w = T^-1 (beta k e^g) walks K again); the launcher runs that form where
K is wider than PREP_K_LOOP_ABOVE (timed against the other there). It gives the same outputs, final states and gradients as the
prep kernel that holds K whole."""
import pytest
import torch

from flexla.runtime import launch
from flexla.variants import get
from variant_cases import extras_at_37, random_inputs


def _run(variant, inputs, states):
    xs = [x.detach().clone().requires_grad_() for x in inputs]
    h0 = xs[-1] if states == 1 else tuple(xs[-states:])
    o, ht = variant(*xs[:-states], initial_state=h0, output_final_state=True)
    ht = ht if states > 1 else (ht,)
    ((o * torch.linspace(-1, 1, o.shape[-1])).sum() + sum(h.square().sum() for h in ht)).backward()
    return [o.detach(), *(h.detach() for h in ht)] + [x.grad for x in xs]


@pytest.mark.parametrize("name, walking", [("kda", {"chunk_prep_k_loop", "bwd_prep_k_loop"}),
                                           ("delta_rule", {"chunk_prep_k_loop", "bwd_prep_k_loop"}),
                                           ("mlstm", {"bwd_prep_k_loop"})])
def test_prep_walking_k_gives_the_same_results(name, walking, monkeypatch, rel):
    """K = V = 40 in slices of 16: three, the last masked (16-wide tiles only on the interpreter);
    KDA's and the delta rule's preps walk V too, after K (their [C, V] solve)."""
    K, V = 40, 40
    (q, k, v), extras, h0 = random_inputs(name, 1, 37, 2, K, V)
    extras = extras_at_37(name, K, torch.Generator().manual_seed(1)) or extras
    if name in ("delta_rule", "kda"):
        k = torch.nn.functional.normalize(k, dim=-1)
    h0 = [h0] + ([torch.randn(1, 2, K)] if name == "mlstm" else [])     # mLSTM's normaliser state
    variant = get(name)
    launched, real_run = [], launch.Launch.run

    def noting(self, kernel, grid, pointers):
        launched.append((kernel.__name__, self.consts["BK"]))
        if kernel.__name__ in variant.compile().meta["prep_walks_v"]:
            assert self.consts["BV"] == 16
        return real_run(self, kernel, grid, pointers)
    monkeypatch.setattr(launch.Launch, "run", noting)
    old = variant.schedule, variant.chunk_size
    variant.schedule, variant.chunk_size = "chunk", 16
    try:
        whole = _run(variant, [q, k, v, *extras, *h0], len(h0))
        assert not {n for n, _ in launched} & walking
        monkeypatch.setattr(launch, "PREP_K_LOOP_ABOVE", 0)
        monkeypatch.setattr(launch, "PREP_K_LOOP", 1)          # off the GPU nothing is timed: the first form
        monkeypatch.setattr(launch, "PREP_LOOP_BK", 16)
        monkeypatch.setattr(launch, "NARROW_TILES", True)
        launched.clear()
        walked = _run(variant, [q, k, v, *extras, *h0], len(h0))
    finally:
        variant.schedule, variant.chunk_size = old
    assert {(n, 16) for n in walking} <= set(launched)
    walks_v = set(variant.compile().meta["prep_walks_v"])
    assert walks_v == (walking if name != "mlstm" else set())    # mLSTM's backward prep sums over V
    assert not {n for n, _ in launched} & {n.removesuffix("_k_loop") for n in walking}
    for a, b in zip(walked, whole):
        assert rel(a, b) < 1e-6
