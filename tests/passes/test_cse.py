from graphs import GraphBuilder, assert_same_graph, expr, ops

from flexla.ir import C, K, Op, verify
from flexla.passes.cse import common_subexpressions


def test_identical_nodes_merge_and_users_follow():
    b = GraphBuilder()
    x = b.input("x", (C, K))
    e1 = b.add(Op.EXP, x)
    e2 = b.add(Op.EXP, x)
    after = common_subexpressions(b.build(o=b.add(Op.MUL, e1, e2), e=e2))

    e = GraphBuilder()
    x = e.input("x", (C, K))
    ex = e.add(Op.EXP, x)
    assert_same_graph(after, e.build(o=e.add(Op.MUL, ex, ex), e=ex))


def test_merging_cascades_to_users():
    b = GraphBuilder()
    x = b.input("x", (C, K))
    y = b.input("y", (C, K))
    a1 = b.add(Op.ADD, b.add(Op.EXP, x), y)
    a2 = b.add(Op.ADD, b.add(Op.EXP, x), y)                   # same as a1 once the exps merge
    after = verify(common_subexpressions(b.build(o=b.add(Op.SUB, a1, a2))))
    assert ops(after) == ["exp", "add", "sub"]
    assert expr(after, "o") == "sub(add(exp(x), y), add(exp(x), y))"
    sub = after[after.outputs["o"]]
    assert sub.inputs[0] == sub.inputs[1]


def test_equal_constants_and_fulls_merge():
    b = GraphBuilder()
    c1, c2, c3 = b.const(2), b.const(2), b.const(3)
    f1 = b.add(Op.FULL, value=0.0, shape=(C, K))
    f2 = b.add(Op.FULL, value=0.0, shape=(C, K))
    after = common_subexpressions(b.build(a=c1, b=c2, c=c3, f=f1, g=f2))
    assert after.outputs["a"] == after.outputs["b"] != after.outputs["c"]
    assert after.outputs["f"] == after.outputs["g"]
    assert ops(after) == ["const", "const", "full"]


def test_different_attrs_inputs_or_order_do_not_merge():
    b = GraphBuilder()
    x = b.input("x", (C, K))
    y = b.input("y", (C, K))
    s0 = b.add(Op.SUM, x, dims=(0,), keepdim=True)
    s1 = b.add(Op.SUM, x, dims=(1,), keepdim=True)
    d1 = b.add(Op.SUB, x, y)
    d2 = b.add(Op.SUB, y, x)
    e1, e2 = b.add(Op.EXP, x), b.add(Op.EXP, y)
    f1 = b.add(Op.FULL, value=0.0, shape=(C, K))
    f2 = b.add(Op.FULL, value=0.0, shape=(K, C))
    before = b.build(s0=s0, s1=s1, d1=d1, d2=d2, e1=e1, e2=e2, f1=f1, f2=f2)
    assert_same_graph(common_subexpressions(before), before)


def test_inputs_of_same_shape_are_not_merged():
    b = GraphBuilder()
    q = b.input("q", (C, K))
    k = b.input("k", (C, K))
    before = b.build(o=b.add(Op.MUL, q, k))
    after = common_subexpressions(before)
    assert_same_graph(after, before)
    assert [n.name for n in after.inputs] == ["q", "k"]
