import pytest
from graphs import GraphBuilder, simple_gla_forward

from flexla.ir import C, K, V, Op, verify
from flexla.passes.partition import (
    KernelPlan, flops, partition_backward, partition_forward, recompute_or_materialize, split_phases,
    staged_tensors,
)

INTRA_ONLY_FOR_O = ("qs", "decay", "qk", "A", "o_intra", "qg")
INTRA_ONLY_FOR_S = ("glast", "kk", "kv", "d")


@pytest.fixture
def gla():
    return simple_gla_forward()


def test_split_phases(gla):
    graph, n = gla
    phases = split_phases(graph)
    assert set(phases) == {"intra", "merge", "update"}
    assert phases["merge"] == [n["inter"], n["o"]]
    assert phases["update"] == [n["S_decayed"], n["S_next"]]
    for key in INTRA_ONLY_FOR_O + INTRA_ONLY_FOR_S + ("gc",):
        assert n[key] in phases["intra"]
    # every computed node lands in exactly one phase, in graph order; inputs are in none
    computed = [x.name for x in graph.nodes if x.op is not Op.INPUT]
    assert sorted(sum(phases.values(), [])) == sorted(computed)
    order = {x.name: i for i, x in enumerate(graph.nodes)}
    for names in phases.values():
        assert names == sorted(names, key=order.get)


def test_split_phases_node_needed_by_o_and_s_next_is_merge():
    b = GraphBuilder()
    S = b.input("S", (K, V))
    q = b.input("q", (C, K))
    s2 = b.add(Op.MUL, S, b.const(2))                         # both outputs need it
    o = b.add(Op.MM, q, s2)
    graph = b.build(o=o, S_next=b.add(Op.EXP, s2))
    phases = split_phases(graph)
    assert phases["merge"] == [s2, o]
    assert len(phases["update"]) == 1 and phases["intra"] == []


def test_partition_forward_kernels(gla):
    graph, n = gla
    plans = partition_forward(graph)
    # its output kernel contracts K only in products: the same plan walking K comes with it
    assert list(plans) == ["fused_fwd", "chunk_prep", "chunk_states", "chunk_output", "chunk_output_k_loop"]
    assert plans["chunk_output_k_loop"].graph is plans["chunk_output"].graph
    assert all(isinstance(p, KernelPlan) and p.name == k for k, p in plans.items())
    for p in plans.values():
        verify(p.graph)
    # the scan reads the decays the prep kernel wrote instead of the gates' cumulative sum
    assert plans["chunk_prep"].graph.outputs == {f"stage:{n['kdec']}": n["kdec"], f"stage:{n['d']}": n["d"]}
    assert [x.name for x in plans["chunk_states"].graph.inputs][-2:] == [n["kdec"], n["d"]]
    assert [x.name for x in plans["chunk_output"].graph.inputs] == ["S", "q", "k", "v", "scale", "g"]

    fused = plans["fused_fwd"]
    assert fused.graph is graph and fused.phases == split_phases(graph)

    states = plans["chunk_states"].graph
    assert states.outputs == {"S_next": n["S_next"]}
    for key in INTRA_ONLY_FOR_O + ("inter", "o"):
        assert n[key] not in states, key
    for key in ("kk", "kv", "kdec", "d", "S_decayed", "S_next"):
        assert n[key] in states, key
    for key in ("gc", "glast"):
        assert n[key] not in states, key
    assert plans["chunk_states"].phases["merge"] == []
    assert plans["chunk_states"].phases["update"] == [n["S_decayed"], n["S_next"]]

    output = plans["chunk_output"].graph
    assert output.outputs == {"o": n["o"]}
    for key in INTRA_ONLY_FOR_S + ("S_decayed", "S_next"):
        assert n[key] not in output, key
    for key in INTRA_ONLY_FOR_O + ("gc", "inter", "o"):
        assert n[key] in output, key
    assert plans["chunk_output"].phases["update"] == []
    assert plans["chunk_output"].phases["merge"] == [n["inter"], n["o"]]

    # the scan reads its decays (staged), so no chunk tensor is computed by both kernels
    assert states.meta["recompute"] == output.meta["recompute"] == {}


def test_recompute_cheap_shared_tensors(gla):
    graph, n = gla
    states = graph.subgraph({"S_next": graph.outputs["S_next"]})
    output = graph.subgraph({"o": graph.outputs["o"]})
    assert recompute_or_materialize(graph, states, output) == {n["gc"]: "recompute"}


def _expensive_scalar_graph():
    """A scalar that costs a [C, C] x K product but is 4 bytes: both kernels need it."""
    b = GraphBuilder()
    S = b.input("S", (K, V))
    q = b.input("q", (C, K))
    k = b.input("k", (C, K))
    kt = b.add(Op.TRANSPOSE, k)
    qk = b.add(Op.MM, q, kt)
    s = b.add(Op.SUM, qk, dims=(0, 1), keepdim=False)
    graph = b.build(o=b.add(Op.MUL, b.add(Op.MM, q, S), s), S_next=b.add(Op.MUL, S, s))
    return graph, kt, qk, s


def test_materialize_expensive_small_tensor():
    graph, kt, qk, s = _expensive_scalar_graph()
    states = graph.subgraph({"S_next": graph.outputs["S_next"]})
    output = graph.subgraph({"o": graph.outputs["o"]})
    assert flops(graph, qk) == 2 * 64 * 64 * 128
    assert recompute_or_materialize(graph, states, output) == {
        kt: "recompute", qk: "recompute", s: "materialize"}


def test_partition_forward_refuses_to_materialize():
    graph, *_ = _expensive_scalar_graph()
    with pytest.raises(NotImplementedError, match="materialise"):
        partition_forward(graph)


def test_flops():
    graph, n = simple_gla_forward()
    assert flops(graph, "q") == 0
    assert flops(graph, n["qk"]) == 2 * 64 * 64 * 128        # [C, C] outputs, K-long dot products
    assert flops(graph, n["kv"]) == 2 * 128 * 128 * 64
    assert flops(graph, n["gc"]) == 64
    assert flops(graph, n["d"]) == 1


def test_partition_backward_fused_and_split():
    """bwd computes everything; bwd_states only what dS needs; bwd_grads everything but dS."""
    b = GraphBuilder()
    x = b.input("x", (C, K))
    s = b.input("dS_next", (K, K))
    two = b.const(2)
    y = b.add(Op.MUL, x, two)
    z = b.add(Op.EXP, y)
    ds = b.add(Op.MUL, s, two)
    plans = partition_backward(b.build(dx=z, dS=ds))
    assert list(plans) == ["bwd", "bwd_states", "bwd_grads"]
    assert plans["bwd"].phases == {"grad": [y, z, ds]}
    assert plans["bwd_states"].phases == {"grad": [ds]}
    assert plans["bwd_grads"].phases == {"grad": [y, z]}


def _delta_rule_forward():
    """The delta rule's chunk step: w = T k, u = T v with T = (I + tril(k k^T, -1))^-1."""
    b = GraphBuilder()
    S, q, k, v = b.input("S", (K, V)), b.input("q", (C, K)), b.input("k", (C, K)), b.input("v", (C, V))
    kt = b.add(Op.TRANSPOSE, k)
    A = b.add(Op.ADD, b.add(Op.EYE, shape=(C, C)), b.add(Op.TRIL, b.add(Op.MM, k, kt), diagonal=-1))
    T = b.add(Op.TRIINV, A, unit=True, upper=False)
    w, u = b.add(Op.MM, T, k, name="w"), b.add(Op.MM, T, v, name="u")
    vn = b.add(Op.SUB, u, b.add(Op.MM, w, S), name="vn")
    o = b.add(Op.ADD, b.add(Op.MM, q, S), b.add(Op.MM, b.add(Op.TRIL, b.add(Op.MM, q, kt), diagonal=0), vn))
    return b.build(o=o, S_next=b.add(Op.ADD, S, b.add(Op.MM, kt, vn))), T


def test_state_kernel_reads_staged_tensors_instead_of_computing_them():
    graph, T = _delta_rule_forward()
    plans = partition_forward(graph)
    # its prep contracts K (the keys' scores): the same prep walking K comes with it (tiling.prep_k_walks)
    assert list(plans) == ["fused_fwd", "chunk_prep", "chunk_prep_k_loop", "chunk_states", "chunk_output",
                           "chunk_output_k_loop"]
    assert plans["chunk_prep_k_loop"].graph is plans["chunk_prep"].graph
    prep, states, output = (plans[k].graph for k in ("chunk_prep", "chunk_states", "chunk_output"))
    assert prep.outputs == {"stage:w": "w", "stage:u": "u"} and T in prep
    for g in (states, output):
        verify(g)
        assert g["w"].op is Op.INPUT and g["u"].op is Op.INPUT and T not in g
        assert g.meta["staged"] == ["w", "u", "vn"] and g.meta["scan_staged"] == ["vn"]
    # the corrected values u - w S: the scan computes them and writes them, the output kernel reads
    # them, and needs neither w nor u nor the product with S any more
    assert states["vn"].op is Op.SUB and states.outputs["stage:vn"] == "vn"
    used = {i for n in output.nodes for i in n.inputs}
    assert output["vn"].op is Op.INPUT and not {"w", "u"} & used
    assert [n.op for n in output.nodes].count(Op.MM) == 3        # q S, q k^T, A vn
    assert plans["fused_fwd"].graph is graph and graph["w"].op is Op.MM        # fused recomputes all


def test_small_tensors_that_mix_rows_are_staged_not_large_ones(gla):
    graph, n = gla
    states = graph.subgraph({"S_next": graph.outputs["S_next"]})
    # kv = k^T v and kk = k * decay feed the update but take no [C, C] work, so the scan computes
    # them; the decays inside them come from a cumulative sum (rows mixed): read back instead
    assert staged_tensors(states) == [n["kdec"], n["d"]]


def test_nothing_staged_without_row_mixing_or_quadratic_work():
    """S_next = S * exp(a) + k^T v with a per-head gate: exp(a) is small but mixes no rows."""
    b = GraphBuilder()
    S, k, v, a = b.input("S", (K, V)), b.input("k", (C, K)), b.input("v", (C, V)), b.input("a")
    S_next = b.add(Op.ADD, b.add(Op.MUL, S, b.add(Op.EXP, a)), b.add(Op.MM, b.add(Op.TRANSPOSE, k), v))
    assert staged_tensors(b.build(S_next=S_next)) == []


def test_a_state_sized_candidate_stages_its_operands():
    """dS_prev = dS + k^T (A do) with A [C, C]: staging the [K, V] product would cost a state per
    chunk, so the [C, V] operand A do is staged and the scan multiplies by k^T itself."""
    b = GraphBuilder()
    dS, q, k, do = b.input("dS_next", (K, V)), b.input("q", (C, K)), b.input("k", (C, K)), b.input("do", (C, V))
    kt = b.add(Op.TRANSPOSE, k)
    Ado = b.add(Op.MM, b.add(Op.TRIL, b.add(Op.MM, k, b.add(Op.TRANSPOSE, q)), diagonal=0), do, name="Ado")
    dS_prev = b.add(Op.ADD, dS, b.add(Op.MM, kt, Ado))
    scan = b.build(dS=dS_prev).replace(states=["dS_next"])
    assert staged_tensors(scan) == ["Ado"]
    plans = partition_backward(scan)
    assert list(plans) == ["bwd", "bwd_prep", "bwd_prep_k_loop", "bwd_states", "bwd_grads"]   # k q^T sums over K
    assert plans["bwd_states"].graph["Ado"].op is Op.INPUT


def test_a_tile_built_on_a_scan_of_rows_is_staged_whole():
    """GLA's state update: S_next = S * exp(g_last)[:, None] + (k * exp(g_last - cumsum(g)))^T v with
    a [C, K] gate. The [C, K] cumulative sum would stay in the scan if only the small g_last were
    staged, so the decayed keys are staged whole (they replace the scan's reads of k and g)."""
    b = GraphBuilder()
    S, k, v, g = b.input("S", (K, V)), b.input("k", (C, K)), b.input("v", (C, V)), b.input("g", (C, K))
    gc = b.add(Op.CUMSUM, g, dim=0)
    glast = b.add(Op.SELECT, gc, dim=0, index=-1)
    kdec = b.add(Op.MUL, k, b.add(Op.EXP, b.add(Op.SUB, b.add(Op.UNSQUEEZE, glast, dim=0), gc)), name="kdec")
    d = b.add(Op.UNSQUEEZE, b.add(Op.EXP, glast, name="d"), dim=1)
    S_next = b.add(Op.ADD, b.add(Op.MUL, S, d), b.add(Op.MM, b.add(Op.TRANSPOSE, kdec, name="kdec_t"), v))
    assert staged_tensors(b.build(S_next=S_next)) == ["d", "kdec_t"]


def test_tiles_with_a_unit_dim_are_not_staged_but_what_they_are_built_from():
    """S_next = S + k^T ((v - k S) * exp(rowsum)[:, None]), rowsum a row sum of a [C, K] cumulative
    gate: the S-dependent product takes the [C, 1] column directly, a tile with a broadcast dim,
    which has no staged layout; the [C] vector it is unsqueezed from is staged instead."""
    b = GraphBuilder()
    S, k, v, g = b.input("S", (K, V)), b.input("k", (C, K)), b.input("v", (C, V)), b.input("g", (C, K))
    rowsum = b.add(Op.SUM, b.add(Op.CUMSUM, g, dim=0), dims=(1,), keepdim=False)
    col = b.add(Op.UNSQUEEZE, b.add(Op.EXP, rowsum, name="decay"), dim=1)
    v_new = b.add(Op.MUL, b.add(Op.SUB, v, b.add(Op.MM, k, S)), col)
    S_next = b.add(Op.ADD, S, b.add(Op.MM, b.add(Op.TRANSPOSE, k), v_new))
    graph = b.build(S_next=S_next)
    assert staged_tensors(graph) == ["decay"]


def test_per_chunk_kernel_reads_the_inverse_the_prep_kernel_computed():
    """A delta-rule-like backward: the reverse scan reads w^T, w = T k (T a triangular inverse),
    which the prep kernel stages; the gradient kernel needs T and w themselves too, so they are
    staged as well rather than inverted again there. k k^T, also on the prep kernel's way but no
    inverse, is recomputed."""
    b = GraphBuilder()
    dS, k, do = b.input("dS_next", (K, V)), b.input("k", (C, K)), b.input("do", (C, V))
    kk = b.add(Op.MM, k, b.add(Op.TRANSPOSE, k), name="kk")
    A = b.add(Op.ADD, b.add(Op.EYE, shape=(C, C)), b.add(Op.TRIL, kk, diagonal=-1))
    T = b.add(Op.TRIINV, A, unit=True, upper=False, name="T")
    w = b.add(Op.MM, T, k, name="w")
    dS_prev = b.add(Op.ADD, dS, b.add(Op.MM, b.add(Op.TRANSPOSE, w, name="wt"), b.add(Op.MM, k, dS)))
    dv = b.add(Op.MM, b.add(Op.TRANSPOSE, T), do)
    dq = b.add(Op.MM, kk, b.add(Op.MM, w, dS))
    plans = partition_backward(b.build(dS=dS_prev, dv=dv, dq=dq).replace(states=["dS_next"]))
    assert plans["bwd_prep"].graph.outputs == {"stage:wt": "wt", "stage:T": "T", "stage:w": "w"}
    grads = plans["bwd_grads"].graph
    assert grads["T"].op is Op.INPUT and grads["w"].op is Op.INPUT and grads["kk"].op is Op.MM
    assert grads.meta["staged"] == ["wt", "T", "w"]


def test_nothing_more_staged_without_an_inverse():
    """The same without the inverse (w = tril(k k^T) k): the gradient kernel recomputes the [C, C]
    product, so only what the scan reads is staged."""
    b = GraphBuilder()
    dS, k, do = b.input("dS_next", (K, V)), b.input("k", (C, K)), b.input("do", (C, V))
    A = b.add(Op.TRIL, b.add(Op.MM, k, b.add(Op.TRANSPOSE, k)), diagonal=-1, name="A")
    w = b.add(Op.MM, A, k, name="w")
    dS_prev = b.add(Op.ADD, dS, b.add(Op.MM, b.add(Op.TRANSPOSE, w, name="wt"), b.add(Op.MM, k, dS)))
    dq = b.add(Op.MM, w, dS)
    plans = partition_backward(b.build(dS=dS_prev, dv=b.add(Op.MM, b.add(Op.TRANSPOSE, A), do), dq=dq).replace(
        states=["dS_next"]))
    assert plans["bwd_prep"].graph.outputs == {"stage:wt": "wt"}
    assert plans["bwd_grads"].graph["w"].op is Op.MM
    assert plans["bwd_grads"].graph["A"].op is not Op.INPUT


def test_the_scan_writes_nothing_the_output_does_not_share():
    """Linear attention: the scan's only state-dependent value is the next state; the output's
    q S is its own."""
    b = GraphBuilder()
    S, q, k, v = b.input("S", (K, V)), b.input("q", (C, K)), b.input("k", (C, K)), b.input("v", (C, V))
    o = b.add(Op.ADD, b.add(Op.MM, q, S, name="qS"), v)
    plans = partition_forward(b.build(o=o, S_next=b.add(Op.ADD, S, b.add(Op.MM, b.add(Op.TRANSPOSE, k), v))))
    assert plans["chunk_states"].graph.meta["scan_staged"] == []
    assert plans["chunk_output"].graph["qS"].op is Op.MM


def test_the_reverse_scan_writes_the_value_gradient_it_computes():
    """A delta-rule-like backward: dS_prev = dS + w^T (k dS + A do). The reverse scan computes the
    [C, V] tile k dS + A do (FLA's dv2) for its own product; the gradient kernel, which needs it for
    dv and dq, reads it back rather than contract k dS over K again."""
    b = GraphBuilder()
    dS, k, do, w = b.input("dS_next", (K, V)), b.input("k", (C, K)), b.input("do", (C, V)), b.input("w", (C, K))
    A = b.add(Op.TRIL, b.add(Op.MM, k, b.add(Op.TRANSPOSE, k)), diagonal=0, name="A")
    dv = b.add(Op.ADD, b.add(Op.MM, k, dS), b.add(Op.MM, A, do), name="dv2")
    dS_prev = b.add(Op.ADD, dS, b.add(Op.MM, b.add(Op.TRANSPOSE, w), dv))
    dq = b.add(Op.MM, dv, b.add(Op.TRANSPOSE, b.input("S", (K, V))))
    plans = partition_backward(b.build(dS=dS_prev, dv=dv, dq=dq).replace(states=["dS_next"]))
    scan, grads = plans["bwd_states"].graph, plans["bwd_grads"].graph
    assert scan.outputs["stage:dv2"] == "dv2" and "dv2" in scan.meta["staged"]
    assert grads["dv2"].op is Op.INPUT and not any("dS_next" in n.inputs for n in grads.nodes)


def _kda_like_forward(same_gates: bool = True):
    """KDA's chunk step in brief: w = T k, u = T v with T = (I + tril(gated k k^T, -1))^-1, and the
    output's gated scores q k^T over the gates g (or over other gates h)."""
    b = GraphBuilder()
    S, q, k, v = b.input("S", (K, V)), b.input("q", (C, K)), b.input("k", (C, K)), b.input("v", (C, V))
    g = b.input("g", (C, K))
    h = g if same_gates else b.input("h", (C, K))
    kk = b.add(Op.TRIL, b.add(Op.GATED_SCORES, k, k, g), diagonal=-1)
    T = b.add(Op.TRIINV, b.add(Op.ADD, b.add(Op.EYE, shape=(C, C)), kk), unit=True, upper=False)
    w, u = b.add(Op.MM, T, k, name="w"), b.add(Op.MM, T, v, name="u")
    vn = b.add(Op.SUB, u, b.add(Op.MM, w, S), name="vn")
    qk = b.add(Op.GATED_SCORES, q, k, h, name="qk")
    o = b.add(Op.ADD, b.add(Op.MM, q, S), b.add(Op.MM, qk, vn))
    return b.build(o=o, S_next=b.add(Op.ADD, S, b.add(Op.MM, b.add(Op.TRANSPOSE, k), vn)))


def test_output_scores_over_the_prep_gates_are_staged_by_the_prep():
    plans = partition_forward(_kda_like_forward())
    prep, states, output = (plans[k].graph for k in ("chunk_prep", "chunk_states", "chunk_output"))
    assert prep.outputs == {"stage:w": "w", "stage:u": "u", "stage:qk": "qk"}
    assert plans["chunk_prep_k_loop"].graph is prep        # both gated products add up over K slices
    assert output["qk"].op is Op.INPUT and not any(n.op is Op.GATED_SCORES for n in output.nodes)
    assert "qk" not in states
    for g in (states, output):
        assert g.meta["staged"] == ["w", "u", "qk", "vn"] and g.meta["output_staged"] == ["qk"]
    # no gated product left: the output kernel may walk K
    assert "chunk_output_k_loop" in plans


def test_output_scores_over_other_gates_stay_in_the_output_kernel():
    plans = partition_forward(_kda_like_forward(same_gates=False))
    assert plans["chunk_prep"].graph.outputs == {"stage:w": "w", "stage:u": "u"}
    output = plans["chunk_output"].graph
    assert output["qk"].op is Op.GATED_SCORES and output.meta["output_staged"] == []
    assert "chunk_output_k_loop" not in plans
