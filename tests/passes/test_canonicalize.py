import pytest
from graphs import GraphBuilder, assert_same_graph, expr, ops

from flexla.ir import C, K, Op, verify
from flexla.passes.canonicalize import canonicalize


def test_constant_arithmetic_folds_to_one_constant():
    b = GraphBuilder()
    x = b.input("x", (C, K))
    two, three, four = b.const(2), b.const(3), b.const(4)
    s = b.add(Op.MUL, b.add(Op.ADD, two, three), four)       # (2 + 3) * 4
    after = canonicalize(b.build(o=b.add(Op.MUL, x, s)))

    e = GraphBuilder()
    x = e.input("x", (C, K))
    e.const(2), e.const(3), e.const(4)
    e.const(5)                                                # add(2, 3) folded in place
    twenty = e.const(20)                                      # mul(5, 4) folded in place
    assert_same_graph(after, e.build(o=e.add(Op.MUL, x, twenty)))
    assert expr(after, "o") == "mul(x, 20.0)"


def test_unary_and_binary_folds():
    b = GraphBuilder()
    e = b.add(Op.EXP, b.const(0))
    n = b.add(Op.NEG, b.add(Op.SQRT, b.const(9)))
    m = b.add(Op.MAXIMUM, b.const(-1), b.const(2))
    d = b.add(Op.DIV, b.const(1), b.const(4))
    after = canonicalize(b.build(e=e, n=n, m=m, d=d))
    assert {r: expr(after, r) for r in after.outputs} == {"e": "1.0", "n": "-3.0", "m": "2.0", "d": "0.25"}


def test_fold_that_would_raise_is_left_alone():
    b = GraphBuilder()
    d = b.add(Op.DIV, b.const(1), b.const(0))
    l = b.add(Op.LOG, b.const(-1))
    e = b.add(Op.EXP, b.const(1000))                          # overflows: the kernel computes inf
    after = canonicalize(b.build(d=d, l=l, e=e))
    assert expr(after, "d") == "div(1.0, 0.0)"
    assert expr(after, "l") == "log(-1.0)"
    assert expr(after, "e") == "exp(1000.0)"


@pytest.mark.parametrize("op, value, const_left", [
    (Op.MUL, 1, False), (Op.MUL, 1, True), (Op.DIV, 1, False),
    (Op.ADD, 0, False), (Op.ADD, 0, True), (Op.SUB, 0, False),
])
def test_identity_is_dropped(op, value, const_left):
    b = GraphBuilder()
    x = b.input("x", (C, K))
    c = b.const(value)
    y = b.add(op, *((c, x) if const_left else (x, c)))
    after = canonicalize(b.build(o=b.add(Op.EXP, y)))

    e = GraphBuilder()
    x = e.input("x", (C, K))
    e.const(value)
    assert_same_graph(after, e.build(o=e.add(Op.EXP, x)))


@pytest.mark.parametrize("op, value, const_left", [
    (Op.MUL, 2, False),     # not an identity value
    (Op.MUL, 0, False),
    (Op.DIV, 1, True),      # 1 / x
    (Op.SUB, 0, True),      # 0 - x
])
def test_non_identity_is_kept(op, value, const_left):
    b = GraphBuilder()
    x = b.input("x", (C, K))
    c = b.const(value)
    before = b.build(o=b.add(op, *((c, x) if const_left else (x, c))))
    assert_same_graph(canonicalize(before), before)


def test_squeeze_of_unsqueeze_is_dropped():
    b = GraphBuilder()
    x = b.input("x", (C,))
    u0 = b.add(Op.UNSQUEEZE, x, dim=0)
    s0 = b.add(Op.SQUEEZE, u0, dim=0)
    u1 = b.add(Op.UNSQUEEZE, x, dim=-1)                       # negative dims normalise
    s1 = b.add(Op.SQUEEZE, u1, dim=1)
    after = canonicalize(b.build(o=b.add(Op.ADD, s0, s1)))

    e = GraphBuilder()
    x = e.input("x", (C,))
    e.add(Op.UNSQUEEZE, x, dim=0)
    e.add(Op.UNSQUEEZE, x, dim=-1)
    assert_same_graph(after, e.build(o=e.add(Op.ADD, x, x)))


def test_squeeze_of_unsqueeze_other_dim_is_kept():
    b = GraphBuilder()
    x = b.input("x", (1,))
    u = b.add(Op.UNSQUEEZE, x, dim=0)                         # [1, 1]
    before = b.build(o=b.add(Op.SQUEEZE, u, dim=1))
    assert_same_graph(canonicalize(before), before)


@pytest.mark.parametrize("squeeze_dim", [1, -1])
def test_sum_keepdim_then_squeeze_becomes_sum(squeeze_dim):
    b = GraphBuilder()
    x = b.input("x", (C, K))
    s = b.add(Op.SUM, x, dims=(1,), keepdim=True)            # [C, 1]
    after = canonicalize(b.build(o=b.add(Op.SQUEEZE, s, dim=squeeze_dim)))

    e = GraphBuilder()
    x = e.input("x", (C, K))
    e.add(Op.SUM, x, dims=(1,), keepdim=True)                 # now dead, left to DCE
    assert_same_graph(after, e.build(o=e.add(Op.SUM, x, dims=(1,), keepdim=False)))
    assert after[after.outputs["o"]].shape == (C,)


def test_sum_keepdim_then_squeeze_of_other_dim_is_kept():
    b = GraphBuilder()
    x = b.input("x", (1, K))
    s = b.add(Op.SUM, x, dims=(1,), keepdim=True)            # [1, 1]
    before = b.build(o=b.add(Op.SQUEEZE, s, dim=0))          # squeezes the dim that was not summed
    assert_same_graph(canonicalize(before), before)


def test_aliases_reach_users_and_outputs_through_chains():
    b = GraphBuilder()
    x = b.input("x", (C, K))
    one = b.add(Op.SUB, b.const(3), b.const(2))               # folds to 1.0, then x * 1 -> x
    y = b.add(Op.MUL, x, one)
    z = b.add(Op.ADD, y, b.const(0))                          # -> x
    after = verify(canonicalize(b.build(o=b.add(Op.EXP, z), raw=z)))
    assert after.outputs["raw"] == "x"
    assert expr(after, "o") == "exp(x)"
    assert "mul" not in ops(after) and "add" not in ops(after)


def test_input_graph_is_not_mutated():
    b = GraphBuilder()
    x = b.input("x", (C, K))
    before = b.build(o=b.add(Op.MUL, x, b.const(1)))
    text = str(before)
    canonicalize(before)
    assert str(before) == text
