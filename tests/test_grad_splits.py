"""A per-chunk gradient kernel that mixes no lanes along V (the dv kernel of a split gradient) may
give each program a slice of V, and one whose contractions over K reach only gradients without
a K axis (GLA's dq/dk/dg: each key column apart; retention's, whose d_gamma each slice adds a
part of) a slice of K (runtime/launch.grad_launch): the gradients are the same as whole."""
import pytest
import torch

import flexla
from flexla.runtime import launch
from flexla.variants import get
from variant_cases import extras_at_37, gradients, random_inputs


@flexla.linear_attention(chunk_size=16)
class GatedSkip:
    """Simple GLA plus a skip connection the gate scales, o += sigmoid(g) v: the gate's gradient
    gains a term without K (do . v) that only one K slice may add."""

    def intra(q, k, v, g: "[C]"):
        g_in, g = g, g.cumsum(0)
        A = ((q @ k.T) * (g[:, None] - g[None, :]).tril().exp()).tril()
        return dict(o=A @ v + g_in.sigmoid()[:, None] * v, qg=q * g.exp()[:, None],
                    kv=(k * (g[-1] - g).exp()[:, None]).T @ v, decay=g[-1].exp())

    def update(S, c):
        return S * c["decay"] + c["kv"]

    def merge(S, c):
        return c["o"] + c["qg"] @ S


def _sliced_against_whole(name, K, V, knob, value, axis, monkeypatch, rel, variant=None, also=None):
    """Gradients with `knob` set to `value` (slices of 16 along `axis`, "NK" or "NV"; the head dim
    of 40 makes three, the last masked) against the same call with the axis whole. `variant`
    stands in for the shipped one of that name (called on the same inputs); `also`: more of
    launch's knobs, set with `knob`."""
    variant = variant or get(name)
    (q, k, v), extras, h0 = random_inputs(name, 1, 37, 2, K, V)
    extras = extras_at_37(name, K, torch.Generator().manual_seed(1)) or extras
    if name in ("delta_rule", "gated_delta_rule", "kda"):
        k = torch.nn.functional.normalize(k, dim=-1)
    h0 = [h0] + ([torch.randn(1, 2, K)] if name == "mlstm" else [])     # mLSTM's normaliser state
    slices = []
    original = launch.grad_launch

    def noted(*a):
        L = original(*a)
        slices.append(getattr(L, axis))
        return L
    monkeypatch.setattr(launch, "grad_launch", noted)
    old = variant.schedule, variant.chunk_size
    variant.schedule, variant.chunk_size = "chunk", 16
    try:
        whole = gradients(variant, [q, k, v, *extras, *h0], len(h0))
        assert set(slices) == {1}
        for name_, value_ in {knob: value, **(also or {})}.items():
            monkeypatch.setattr(launch, name_, value_)
        monkeypatch.setattr(launch, "NARROW_TILES", True)          # slices of 16 on the interpreter
        sliced = gradients(variant, [q, k, v, *extras, *h0], len(h0))
    finally:
        variant.schedule, variant.chunk_size = old
    assert 3 in slices
    for a, b in zip(sliced, whole):
        assert rel(a, b) < 1e-6


def test_only_kernels_that_keep_lanes_apart_may_split():
    meta = get("retention").compile().meta
    assert meta["v_split_grads"] == ["bwd_grads_dv"]              # dq/dk/d_gamma contract V: whole
    assert meta["k_split_grads"] == ["bwd_grads_dq_dk_d_log_gamma"]   # d_gamma sums over K:
    assert meta["k_part_grads"] == {"bwd_grads_dq_dk_d_log_gamma": ["log_gamma"]}   # a part per slice
    assert get("gla").compile().meta["k_part_grads"] == {}        # its d_g keeps K
    assert get("mlstm").compile().meta["k_split_grads"] == []      # |q . n| of the whole K in dq
    rwkv6 = get("rwkv6").compile().meta          # dv alone, du (a sum over V) with dq, dk, dw
    assert (rwkv6["v_split_grads"], rwkv6["k_split_grads"]) == (["bwd_grads_dv"], ["bwd_grads_dq_dk_d_w_d_u"])
    assert get("gla").compile().meta["k_split_grads"] == ["bwd_grads_dq_dk_d_g"]
    # the delta rule's gradients split since they read u - w S from the scan (partition.written_by_scan):
    delta = get("delta_rule").compile().meta        # dq (do S^T and the scores' part) keeps K's
    assert delta["split_grad_kernels"] == ["bwd_grads_dq", "bwd_grads_dk_dv_d_beta"]   # lanes apart;
    assert delta["v_split_grads"] == [] and delta["k_split_grads"] == ["bwd_grads_dq"]   # the solves
    assert delta["v_loop_grads"] == ["bwd_grads", "bwd_grads_dq", "bwd_grads_dk_dv_d_beta"]  # contract K


@pytest.mark.parametrize("name", ["retention", "gla", "rwkv6"])
def test_v_slices_give_the_same_gradients(name, monkeypatch, rel):
    _sliced_against_whole(name, 16, 40, "GRAD_MAX_BV", 16, "NV", monkeypatch, rel)


@pytest.mark.parametrize("name", ["gla", "rwkv6", "linear_attn", "retention", "simple_gla"])
def test_k_slices_give_the_same_gradients(name, monkeypatch, rel):
    _sliced_against_whole(name, 40, 16, "GRAD_MAX_KV", 16 * 16, "NK", monkeypatch, rel)


def test_k_slices_add_a_term_without_k_once(monkeypatch, rel):
    assert GatedSkip.compile().meta["k_part_grads"] == {"bwd_grads_dq_dk_d_g": ["g"]}
    _sliced_against_whole("simple_gla", 40, 16, "GRAD_MAX_KV", 16 * 16, "NK", monkeypatch, rel, GatedSkip)


@pytest.mark.parametrize("name", ["delta_rule", "gated_delta_rule", "kda", "mlstm", "gla"])
def test_v_loop_gives_the_same_gradients(name, monkeypatch, rel):
    """Kernels that contract over V walk it in slices inside each program (tiling.v_loop)."""
    _sliced_against_whole(name, 16, 40, "GRAD_LOOP_KV", 16 * 16, "NV", monkeypatch, rel)


def test_v_loop_in_k_slices_of_a_variant_defined_here(monkeypatch, rel):
    """GatedSkip's dq/dk/dg kernel takes K slices, each adding a part of dg, and walks V in each."""
    assert "bwd_grads_dq_dk_d_g" in GatedSkip.compile().meta["v_loop_grads"]
    monkeypatch.setattr(launch, "GRAD_MAX_KV", 16 * 16)
    _sliced_against_whole("simple_gla", 40, 40, "GRAD_LOOP_KV", 16 * 16, "NV", monkeypatch, rel, GatedSkip)


def test_k_splits_wait_for_big_states():
    """K = V = 64 stays whole (a 64 x 64 state); K = V = 128 and 256 go in slices of 64."""
    meta = get("gla").compile().meta
    compiled = type("Compiled", (), {"meta": meta})()

    def grad(K, V):
        q, v = torch.zeros(1, 64, 2, K), torch.zeros(1, 64, 2, V)
        L = launch.Launch.of(meta, q, v, 64, 1.0, False, False, v_split=False)
        return launch.grad_launch(compiled, q, v, 64, 1.0, L, "bwd_grads_dq_dk_d_g")
    assert grad(64, 64).NK == 1
    assert (grad(128, 128).NK, grad(128, 128).consts["BK"]) == (2, 64)
    assert (grad(256, 256).NK, grad(256, 256).consts["BK"]) == (4, 64)


def test_kda_hands_its_scores_gradient_between_two_phases():
    """KDA's tril(dA) after the inverse is a contraction over K that gated_apply spreads back over
    K: its gradient kernel runs on K slices as two phases (tiling.k_phases), the first adding a
    part of that [C, C] tile per slice, the second reading the sum."""
    meta = get("kda").compile().meta
    assert meta["k_phase_grads"]["bwd_grads"] == ["bwd_grads_k0", "bwd_grads_k1"]
    assert meta["k_phase_handed"] == ["tril_124"]
    assert {"bwd_grads_k0", "bwd_grads_k1"} <= set(meta["k_split_grads"]) & set(meta["v_loop_grads"])
    assert meta["k_part_grads"]["bwd_grads_k1"] == ["beta"]          # d_beta sums over K too
    assert "bwd_grads" not in meta["k_split_grads"]
    assert get("delta_rule").compile().meta["k_phase_grads"] == {}


@pytest.mark.parametrize("K, V", [(40, 16), (40, 40)])
def test_k_phases_give_the_same_gradients(K, V, monkeypatch, rel):
    """KDA's gradients on three K slices in two phases (and V in a loop of three slices where V =
    40) against the whole kernel."""
    _sliced_against_whole("kda", K, V, "GRAD_MAX_KV", 16 * 16, "NK", monkeypatch, rel,
                          also={"GRAD_LOOP_KV": 16 * 16, "GRAD_K_PHASES_ABOVE": 0})
