from graphs import GraphBuilder, assert_same_graph, ops

from flexla.ir import C, K, Op
from flexla.passes.dce import dead_code


def test_unused_chain_is_removed_inputs_are_kept():
    b = GraphBuilder()
    x = b.input("x", (C, K))
    b.input("unused", (C,))
    y = b.input("y", (C, K))
    b.add(Op.EXP, b.add(Op.MUL, y, b.const(2)))               # dead chain
    live = b.add(Op.SQRT, x)
    after = dead_code(b.build(o=live))

    e = GraphBuilder()
    x = e.input("x", (C, K))
    e.input("unused", (C,))
    e.input("y", (C, K))
    assert_same_graph(after, e.build(o=e.add(Op.SQRT, x)))


def test_everything_an_output_needs_is_kept_in_order():
    b = GraphBuilder()
    x = b.input("x", (C, K))
    a = b.add(Op.EXP, x)
    b.add(Op.NEG, a)                                          # dead
    c = b.add(Op.SUM, a, dims=(1,), keepdim=False)
    b.add(Op.LOG, c)                                          # dead
    d = b.add(Op.TRANSPOSE, a)
    after = dead_code(b.build(s=c, t=d))
    assert ops(after) == ["exp", "sum", "transpose"]
    assert after.outputs == {"s": c, "t": d}


def test_graph_without_dead_code_is_unchanged():
    b = GraphBuilder()
    x = b.input("x", (C, K))
    before = b.build(o=b.add(Op.ADD, b.add(Op.EXP, x), b.const(1)))
    assert_same_graph(dead_code(before), before)


def test_output_that_is_an_input():
    b = GraphBuilder()
    x = b.input("x", (C, K))
    b.add(Op.EXP, x)
    after = dead_code(b.build(o=x))
    assert ops(after) == []
    assert after.outputs == {"o": "x"}
