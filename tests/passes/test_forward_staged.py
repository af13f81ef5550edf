from graphs import GraphBuilder, expr

from flexla.frontend.states import parse_states
from flexla.ir import C, K, V, Op, verify
from flexla.passes.forward_staged import graft_forward_staged, reads_states, same_in_backward
from flexla.passes.partition import partition_backward


def _forward():
    """A delta-rule-like forward: w = T k and u = T v (T a triangular inverse of k k^T) staged."""
    b = GraphBuilder()
    S, k, v = b.input("S", (K, V)), b.input("k", (C, K)), b.input("v", (C, V))
    kk = b.add(Op.MM, k, b.add(Op.TRANSPOSE, k))
    T = b.add(Op.TRIINV, b.add(Op.ADD, b.add(Op.EYE, shape=(C, C)), b.add(Op.TRIL, kk, diagonal=-1)),
              unit=True, upper=False)
    w, u = b.add(Op.MM, T, k, name="w"), b.add(Op.MM, T, v, name="u")
    vn = b.add(Op.SUB, u, b.add(Op.MM, w, S), name="vn")
    return b.build(S_next=b.add(Op.ADD, S, b.add(Op.MM, b.add(Op.TRANSPOSE, k), vn)))


def _backward(w_name="w", other_u=False):
    """Its backward's reverse scan reads w^T through the same inverse (named differently); it has
    no u. With other_u, an unrelated backward node is named `u`."""
    b = GraphBuilder()
    dS, k, v = b.input("dS_next", (K, V)), b.input("k", (C, K)), b.input("v", (C, V))
    kk = b.add(Op.MM, k, b.add(Op.TRANSPOSE, k), name="kk_b")
    T = b.add(Op.TRIINV, b.add(Op.ADD, b.add(Op.EYE, shape=(C, C)), b.add(Op.TRIL, kk, diagonal=-1)),
              unit=True, upper=False, name="T_b")
    w = b.add(Op.MM, T, k, name=w_name)
    dS_prev = b.add(Op.ADD, dS, b.add(Op.MM, b.add(Op.TRANSPOSE, w, name="wt"), b.add(Op.MM, k, dS)))
    outs = dict(dS=dS_prev, dk=b.add(Op.MM, T, b.add(Op.MM, k, dS)), dq=b.add(Op.MM, w, dS))
    if other_u:
        outs["dv"] = b.add(Op.EXP, v, name="u")
    return b.build(**outs).replace(states=["dS_next"])


def test_the_backward_gets_the_forward_staged_tensors_sharing_what_it_has():
    bwd = _backward("w_b")
    grafted, names = graft_forward_staged(bwd, _forward(), ["w", "u"])
    verify(grafted)
    assert names == ["w_b", "u"]                         # w is the backward's own; u is added
    assert [n.name for n in grafted.nodes][len(bwd.nodes):] == ["u"]
    assert expr(grafted.replace(outputs={"u": "u"}), "u") == (
        "mm(triinv(add(eye(shape=(C, C)), tril(mm(k, transpose(k)), diagonal=-1)), unit=True, upper=False), v)")
    assert grafted.outputs == bwd.outputs                # an output of nothing


def test_a_name_the_backward_uses_otherwise_is_not_reused():
    grafted, names = graft_forward_staged(_backward(other_u=True), _forward(), ["w", "u"])
    assert names == ["w", "fwd_u"] and grafted["fwd_u"].op is Op.MM and grafted["u"].op is Op.EXP


def test_nothing_is_grafted_where_the_backward_lacks_a_forward_input():
    b = GraphBuilder()
    dS, k = b.input("dS_next", (K, V)), b.input("k", (C, K))
    bwd = b.build(dS=b.add(Op.MM, b.add(Op.TRANSPOSE, k), b.add(Op.MM, k, dS)))
    assert graft_forward_staged(bwd, _forward(), ["w", "u"]) == (bwd, [])


def test_the_prep_kernel_stages_them_and_the_other_kernels_do_not_read_them():
    grafted, names = graft_forward_staged(_backward(), _forward(), ["w", "u"])
    plans = partition_backward(grafted, forward_staged=names)
    prep = plans["bwd_prep"].graph
    assert set(prep.outputs.values()) == {"wt", "T_b", "w", "u"}
    grads = plans["bwd_grads"].graph
    assert "u" not in grads and grads["w"].op is Op.INPUT     # w read back as before, u not read
    assert "u" not in plans["bwd"].graph                        # nor computed by the fused backward
    assert not reads_states(prep, parse_states("[K, V]"))


def test_a_prep_reading_a_state_is_seen():
    b = GraphBuilder()
    S, q = b.input("S", (K, V)), b.input("q", (C, K))
    prep = b.build(**{"stage:qs": b.add(Op.MM, q, S)})
    assert reads_states(prep, parse_states("[K, V]"))


def test_what_the_forward_scan_writes_is_found_in_the_backward_by_expression():
    """The gradient kernel of a backward that recomputes u - w S (as `vn_b`) reads it from the
    forward scan's run; a forward value the backward lacks has no match."""
    b = GraphBuilder()
    S, k, v = b.input("S", (K, V)), b.input("k", (C, K)), b.input("v", (C, V))
    kk = b.add(Op.MM, k, b.add(Op.TRANSPOSE, k))
    T = b.add(Op.TRIINV, b.add(Op.ADD, b.add(Op.EYE, shape=(C, C)), b.add(Op.TRIL, kk, diagonal=-1)),
              unit=True, upper=False)
    w = b.add(Op.MM, T, k, name="w_b")
    vn = b.add(Op.SUB, b.add(Op.MM, T, v), b.add(Op.MM, w, S), name="vn_b")
    bwd = b.build(dv=b.add(Op.EXP, vn))
    assert same_in_backward(bwd, _forward(), ["vn", "w"]) == ["vn_b", "w_b"]
    assert same_in_backward(_backward(), _forward(), ["vn", "u"]) == [None, None]
