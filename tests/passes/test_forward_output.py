from graphs import GraphBuilder, expr, ops

from flexla.ir import C, K, V, Op
from flexla.passes.forward_output import read_forward_output


def step(b, backward):
    """o = (q S) / (1 + |q s|) and, in the backward, d_s = -sum(do * o / den) (a normalised merge)."""
    S, s, q = b.input("S", (K, V)), b.input("s", (K, 1)), b.input("q", (C, K))
    den = b.add(Op.ADD, b.const(1.0), b.add(Op.ABS, b.add(Op.MM, q, s)))
    o = b.add(Op.DIV, b.add(Op.MM, q, S), den)
    if not backward:
        return b.build(o=o)
    do = b.input("do", (C, V))
    return b.build(d_s=b.add(Op.NEG, b.add(Op.SUM, b.add(Op.MUL, do, b.add(Op.DIV, o, den)), dims=(1,), keepdim=True)))


def test_backward_reads_the_output_instead_of_recomputing_it():
    fwd, bwd = step(GraphBuilder(), False), step(GraphBuilder(), True)
    after = read_forward_output(bwd, fwd)
    assert "o" in after and after["o"].op is Op.INPUT and after["o"].shape == (C, V)
    assert expr(after, "d_s") == "neg(sum(mul(do, div(o, add(1.0, abs(mm(q, s))))), dims=(1), keepdim=True))"
    assert ops(after).count("mm") == 1          # q S is gone; q s (the denominator) stays
    assert [n.a["role"] for n in after.inputs][-2:] == ["do", "o"]


def test_a_backward_without_the_output_is_unchanged():
    fwd = step(GraphBuilder(), False)
    b = GraphBuilder()
    q, do = b.input("q", (C, K)), b.input("do", (C, V))
    bwd = b.build(dq=b.add(Op.MM, do, b.add(Op.TRANSPOSE, b.input("S", (K, V)))), x=q)
    assert read_forward_output(bwd, fwd) is bwd


def test_a_different_expression_is_not_taken_for_the_output():
    fwd = step(GraphBuilder(), False)
    b = GraphBuilder()
    S, s, q = b.input("S", (K, V)), b.input("s", (K, 1)), b.input("q", (C, K))
    b.input("do", (C, V))
    den = b.add(Op.ADD, b.const(2.0), b.add(Op.ABS, b.add(Op.MM, q, s)))      # 2, not 1
    bwd = b.build(d=b.add(Op.DIV, b.add(Op.MM, q, S), den))
    assert read_forward_output(bwd, fwd) is bwd
