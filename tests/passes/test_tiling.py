import pytest
from graphs import GraphBuilder, expr, simple_gla_forward

from flexla.ir import C, K, V, Op, verify
from flexla.passes.tiling import (FIRST_K_SLICE, k_loop, k_phases, k_slices, k_split_blocker, prep_k_walks, tile,
                                  v_loop, v_split_blocker)


def _separable():
    b = GraphBuilder()
    S = b.input("S", (K, V))
    q = b.input("q", (C, K))
    v = b.input("v", (C, V))
    w = b.input("w", (V,))
    x = b.add(Op.MUL, b.add(Op.EXP, v), w)                    # elementwise, broadcasting a [V] row
    y = b.add(Op.ADD, x, b.add(Op.FULL, value=1.0, shape=(C, V)))
    z = b.add(Op.TRANSPOSE, b.add(Op.MM, q, S))               # contracts K, not V
    return b, b.add(Op.MUL, y, b.add(Op.TRANSPOSE, z))


def test_elementwise_and_mm_not_contracting_v_is_separable():
    b, o = _separable()
    graph = b.build(o=o)
    assert v_split_blocker(graph) is None
    after = tile(graph)
    assert after.meta["v_split"] is True and after.meta["v_split_blocker"] is None
    assert after.nodes == graph.nodes and after.outputs == graph.outputs


def test_simple_gla_is_separable():
    graph, _ = simple_gla_forward()
    assert v_split_blocker(graph) is None


@pytest.mark.parametrize("dims", [(1,), (0, 1)])
def test_sum_over_v_blocks(dims):
    b, o = _separable()
    s = b.add(Op.SUM, o, dims=dims, keepdim=True, name="rowsum", loc="merge, /tmp/my_gla.py:7: o.sum(-1)")
    graph = b.build(o=b.add(Op.DIV, o, s))
    blocker = v_split_blocker(graph)
    assert blocker.startswith("rowsum = sum(") and "my_gla.py:7" in blocker    # says what and where
    after = tile(graph)
    assert after.meta["v_split"] is False and after.meta["v_split_blocker"] == blocker


def test_mm_contracting_v_blocks():
    b = GraphBuilder()
    q = b.input("q", (C, V))
    k = b.input("k", (C, V))
    qk = b.add(Op.MM, q, b.add(Op.TRANSPOSE, k), name="qk")    # [C, V] @ [V, C]
    graph = b.build(o=qk)
    blocker = v_split_blocker(graph)
    assert blocker is not None and blocker.startswith("qk = mm(")


def test_first_blocker_is_reported():
    b = GraphBuilder()
    v = b.input("v", (C, V))
    first = b.add(Op.CUMSUM, v, dim=1, name="first")
    second = b.add(Op.MAX, first, dims=(1,), keepdim=False, name="second")
    assert v_split_blocker(b.build(o=second)).startswith("first = cumsum")


def test_ops_without_v_do_not_block():
    b = GraphBuilder()
    g = b.input("g", (C,))
    k = b.input("k", (C, K))
    s = b.add(Op.SUM, b.add(Op.MM, b.add(Op.TRANSPOSE, k), k), dims=(1,), keepdim=False)   # [K]
    c = b.add(Op.CUMSUM, g, dim=0)
    assert v_split_blocker(b.build(s=s, c=c)) is None


def _gla_state_update(contract_k: bool):
    """S_next = exp(g_last) S + (k exp(g_last - g))^T v with g the cumulative sum of a [C, K] gate;
    contract_k adds the delta rule's w S, a product over K."""
    b = GraphBuilder()
    S, k, v, g = b.input("S", (K, V)), b.input("k", (C, K)), b.input("v", (C, V)), b.input("g", (C, K))
    gc = b.add(Op.CUMSUM, g, dim=0)
    last = b.add(Op.SELECT, gc, dim=0, index=-1)
    kd = b.add(Op.MUL, k, b.add(Op.EXP, b.add(Op.SUB, last, gc)))
    v_new = b.add(Op.SUB, v, b.add(Op.MM, k, S, name="wS")) if contract_k else v
    kv = b.add(Op.MM, b.add(Op.TRANSPOSE, kd), v_new)
    return b.build(S_next=b.add(Op.ADD, b.add(Op.MUL, S, b.add(Op.UNSQUEEZE, b.add(Op.EXP, last), dim=1)), kv))


def test_scan_separable_along_k_through_chunk_sums_and_products():
    assert k_split_blocker(_gla_state_update(contract_k=False)) is None


def test_a_product_contracting_k_blocks_the_k_split():
    assert k_split_blocker(_gla_state_update(contract_k=True)).startswith("wS = mm")


def test_a_sum_over_k_blocks_the_k_split():
    b = GraphBuilder()
    S, k = b.input("S", (K, V)), b.input("k", (C, K))
    norm = b.add(Op.SUM, b.add(Op.MUL, k, k), dims=(1,), keepdim=True, name="norm")     # [C, 1]
    kv = b.add(Op.MM, b.add(Op.TRANSPOSE, b.add(Op.DIV, k, norm)), b.input("v", (C, V)))
    assert k_split_blocker(b.build(S_next=b.add(Op.ADD, S, kv))).startswith("norm = sum")


def _gate_gradient(whole_term: bool):
    """A scalar gate's gradient as retention's has it: dq [C, K] per slice, and d_g [C], a sum
    over K of q dq (a part per slice) plus, with whole_term, a term without K (do . v)."""
    b = GraphBuilder()
    q, S, do, v = b.input("q", (C, K)), b.input("S", (K, V)), b.input("do", (C, V)), b.input("v", (C, V))
    dq = b.add(Op.MM, do, b.add(Op.TRANSPOSE, S), name="dq")                   # contracts V: [C, K]
    d_g = b.add(Op.SUM, b.add(Op.MUL, q, dq), dims=(1,), keepdim=False, name="qdq")
    d_g = b.add(Op.REVCUMSUM, b.add(Op.MUL, d_g, b.input("g", (C,))), dim=0)
    if whole_term:
        d_g = b.add(Op.ADD, d_g, b.add(Op.SUM, b.add(Op.MUL, do, v), dims=(1,), keepdim=False, name="dov"))
    return b, dq, d_g


def test_k_slices_leave_parts_of_what_sums_over_k():
    b, dq, d_g = _gate_gradient(whole_term=False)
    slices = k_slices(b.build(dq=dq, d_g=d_g))
    assert slices.blocker is None and slices.partial == {"d_g"}
    assert FIRST_K_SLICE not in slices.graph                     # nothing to count once


def test_a_whole_term_added_to_a_part_counts_on_the_first_slice_only():
    b, dq, d_g = _gate_gradient(whole_term=True)
    slices = k_slices(b.build(dq=dq, d_g=d_g))
    assert slices.partial == {"d_g"}
    assert expr(slices.graph, "d_g").endswith(", mul(sum(mul(do, v), dims=(1), keepdim=False), first_k_slice))")
    verify(slices.graph)
    assert slices.graph.input(FIRST_K_SLICE).shape == ()


def _scores_gradient(reused: bool, with_db: bool = False):
    """KDA's shape of the problem: a = do S^T sums over V; dA = tril(a k^T) contracts K into a
    [C, C] tile that dk = dA k spreads back over K, so no K slice can finish dk alone. With
    `reused`, dk also adds a, which the first phase computes anyway; with `with_db`, a gradient
    db = sum_V(do v) + sum_K(dk k)."""
    b = GraphBuilder()
    q, k, S, do = b.input("q", (C, K)), b.input("k", (C, K)), b.input("S", (K, V)), b.input("do", (C, V))
    a = b.add(Op.MM, do, b.add(Op.TRANSPOSE, S), name="a")
    dA = b.add(Op.TRIL, b.add(Op.MM, a, b.add(Op.TRANSPOSE, k)), diagonal=-1, name="dA")
    dk = b.add(Op.MM, dA, k, name="dk")
    if reused:
        dk = b.add(Op.ADD, dk, a)
    out = dict(dq=b.add(Op.MUL, a, q), dk=dk)
    if with_db:
        dov = b.add(Op.SUM, b.add(Op.MUL, do, b.input("v", (C, V))), dims=(1,), keepdim=False, name="dov")
        out["db"] = b.add(Op.ADD, dov, b.add(Op.SUM, b.add(Op.MUL, dk, k), dims=(1,), keepdim=False))
    return b.build(**out)


def test_a_contraction_over_k_spread_back_over_k_makes_two_phases():
    graph = _scores_gradient(reused=False)
    assert k_slices(graph).graph is None and k_slices(graph).meets == ("dA",)
    phases = k_phases(graph)
    assert phases.handed == ("dA",) and phases.passed == ()
    assert list(phases.first.outputs) == ["dq", "stage:dA"] and phases.first.outputs["stage:dA"] == "dA"
    assert k_slices(phases.first).partial == {"stage:dA"}          # a part per slice, summed between
    assert phases.second["dA"].op is Op.INPUT and list(phases.second.outputs) == ["dk"]
    assert k_slices(phases.second).usable
    for g in (phases.first, phases.second):
        verify(g)


def test_the_second_phase_reads_what_the_first_summed_over_v():
    phases = k_phases(_scores_gradient(reused=True))
    assert phases.passed == ("a",) and phases.first.outputs["stage:a"] == "a"
    assert phases.second["a"].op is Op.INPUT                   # no loop over V again:
    assert not any("S" in n.inputs for n in phases.second.nodes)


def test_the_first_phase_takes_the_seconds_sums_over_v_without_k():
    """db = sum_V(do v) + sum_K(dk k) needs dA, so the second phase computes it; its sum over V
    has no K lanes, which every K slice of the second would compute alike: the first does."""
    phases = k_phases(_scores_gradient(reused=False, with_db=True))
    assert phases.first.outputs["stage:dov"] == "dov" and "dov" in phases.passed
    assert phases.second["dov"].op is Op.INPUT and k_slices(phases.second).partial == {"db"}


def test_no_phases_where_k_slices_suffice_or_k_lanes_mix():
    b, dq, d_g = _gate_gradient(whole_term=True)
    assert k_phases(b.build(dq=dq, d_g=d_g)) is None
    b = GraphBuilder()
    k = b.input("k", (C, K))
    assert k_phases(b.build(dk=b.add(Op.CUMSUM, k, dim=1))) is None


@pytest.mark.parametrize("use", ["exp", "times_a_part", "broadcast_along_k"])
def test_a_part_used_other_than_linearly_blocks_the_k_split(use):
    b, dq, d_g = _gate_gradient(whole_term=False)
    if use == "exp":
        d_g = b.add(Op.EXP, d_g, name="bad")
    elif use == "times_a_part":
        d_g = b.add(Op.MUL, d_g, d_g, name="bad")
    else:                       # a part must not reach a tile with K lanes: each slice holds only its own
        dq = b.add(Op.MUL, dq, b.add(Op.UNSQUEEZE, d_g, dim=1), name="bad")
    slices = k_slices(b.build(dq=dq, d_g=d_g))
    assert slices.graph is None and slices.blocker.startswith("bad = ")


def test_v_loop_adds_up_contractions_over_v_and_finishes_after():
    """dq contracts V (a sum the loop carries), dv has V lanes (in the loop), d_g needs the sum
    (after the loop), and q * scale only the loop's end (after it too, off the loop's registers)."""
    b, dq, d_g = _gate_gradient(whole_term=True)
    dv = b.add(Op.MUL, b.input("do2", (C, V)), b.input("beta", (C, 1)), name="dv")
    qs = b.add(Op.MUL, b.input("q2", (C, K)), b.const(2.0), name="qs")
    loop = v_loop(b.build(dq=b.add(Op.ADD, dq, qs), d_g=d_g, dv=dv))
    assert loop.sums == ("dq", "dov")
    (walk,) = loop.walks
    assert {"dv", "do", "S", "v"} <= set(walk.body) and "beta" in walk.before
    assert {"qdq", "qs", "q2"} <= set(loop.after) and not set(loop.after) & set(walk.body)


def test_what_a_slice_cannot_compute_alone_blocks_the_v_loop():
    b, dq, _ = _gate_gradient(whole_term=False)
    assert v_loop(b.build(dq=dq, dv=b.add(Op.MM, dq, b.input("S2", (K, V))))) is None   # a sum's use in V lanes
    b = GraphBuilder()
    do = b.input("do", (C, V))
    assert v_loop(b.build(dv=b.add(Op.CUMSUM, do, dim=1))) is None                     # mixes V lanes
    assert v_loop(b.build(dv=b.add(Op.MUL, do, do))) is None                           # nothing to add up


def _linear_attention_output():
    """o = q S + tril(q k^T) v: both products contract K."""
    b = GraphBuilder()
    q, k, S, v = b.input("q", (C, K)), b.input("k", (C, K)), b.input("S", (K, V)), b.input("v", (C, V))
    scores = b.add(Op.MM, q, b.add(Op.TRANSPOSE, k), name="scores")
    inter = b.add(Op.MM, q, S, name="inter")
    return b, b.add(Op.ADD, b.add(Op.MM, b.add(Op.TRIL, scores, diagonal=0), v, name="intra"), inter)


def test_k_loop_adds_up_the_output_kernels_contractions_over_k():
    b, o = _linear_attention_output()
    loop = k_loop(b.build(o=o))
    assert set(loop.sums) == {"scores", "inter"}
    assert {"q", "k", "S"} <= set(loop.walks[0].body) and "v" in loop.after and "intra" in loop.after


def test_what_a_k_slice_cannot_compute_alone_blocks_the_k_loop():
    b, o = _linear_attention_output()
    k = b.input("k2", (C, K))
    assert k_loop(b.build(o=o, x=b.add(Op.CUMSUM, k, dim=1))) is None                   # mixes K lanes
    b, o = _linear_attention_output()
    assert k_loop(b.build(o=b.add(Op.MM, b.add(Op.EXP, o), b.input("S2", (V, K))))) is None   # a sum used in K lanes


def _kda_prep():
    """KDA's prep: T = I + tril(gated_scores(k beta, k, g)) adds up over K; its inverse; then
    w = T^-1 (k e^g beta) has K lanes again, u = T^-1 (v beta) has V lanes; the decayed keys only
    need the gates."""
    b = GraphBuilder()
    k, g, v, beta = b.input("k", (C, K)), b.input("g", (C, K)), b.input("v", (C, V)), b.input("beta", (C, 1))
    kb = b.add(Op.MUL, k, beta, name="kb")
    scores = b.add(Op.GATED_SCORES, kb, k, g, name="scores")
    inv = b.add(Op.TRIINV, b.add(Op.TRIL, scores, diagonal=-1, name="low"), upper=False, unit=True, name="inv")
    kg = b.add(Op.MUL, b.add(Op.MUL, k, b.add(Op.EXP, g, name="eg"), name="ke"), beta, name="keb")
    w, u = b.add(Op.MM, inv, kg, name="w"), b.add(Op.MM, inv, b.add(Op.MUL, v, beta, name="vb"), name="u")
    return b, w, u, b.add(Op.MUL, k, b.add(Op.EXP, b.add(Op.NEG, g)), name="kdec")


def test_prep_walks_k_again_for_lanes_that_need_a_sum():
    b, w, u, kdec = _kda_prep()
    walks = prep_k_walks(b.build(w=w, u=u, kdec=kdec))
    first, second, over_v = walks.walks
    assert (first.axis, second.axis, over_v.axis) == (K, K, V)
    assert first.sums == ("scores",) and second.sums == () == over_v.sums
    assert {"k", "g", "kb", "kdec"} <= set(first.body) and not {"eg", "ke", "w"} & set(first.body)
    assert {"k", "g", "eg", "ke", "keb", "w"} <= set(second.body)         # k and g read again
    assert {"low", "inv"} <= set(second.before) and "beta" in first.before
    assert set(over_v.body) == {"v", "vb", "u"} and walks.after == ()      # V lanes after the K walks
    assert (walks.stored_in("kdec"), walks.stored_in("w"), walks.stored_in("u")) == (0, 1, 2)
    # one walk over K where nothing after a sum has K lanes; none without a contraction over K
    assert [w.axis for w in prep_k_walks(b.build(u=u, kdec=kdec)).walks] == [K, V]
    assert prep_k_walks(b.build(kdec=kdec)) is None
    # V stays whole where a walk over K has V lanes (here u's product with the keys' sum)
    mixed = b.add(Op.MM, b.add(Op.TRANSPOSE, kdec), u, name="mixed")
    assert [w.axis for w in prep_k_walks(b.build(w=w, mixed=mixed)).walks] == [K, K]
    assert k_loop(b.build(w=w)) is None              # the output kernel's loop: one walk, no gated sums


def test_what_mixes_k_lanes_blocks_the_prep_walks():
    b, w, u, kdec = _kda_prep()
    assert prep_k_walks(b.build(w=w, x=b.add(Op.CUMSUM, kdec, dim=1))) is None
