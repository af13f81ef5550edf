from graphs import GraphBuilder, assert_same_graph, expr, ops

from flexla.ir import C, K, V, Op
from flexla.passes.dce import dead_code
from flexla.passes.transpose_elimination import eliminate_transposes


def test_double_transpose_cancels():
    b = GraphBuilder()
    x = b.input("x", (C, K))
    t = b.add(Op.TRANSPOSE, x)
    tt = b.add(Op.TRANSPOSE, t)
    after = eliminate_transposes(b.build(o=b.add(Op.EXP, tt), raw=tt))

    e = GraphBuilder()
    x = e.input("x", (C, K))
    e.add(Op.TRANSPOSE, x)                                    # the inner one stays (dead) for DCE
    assert_same_graph(after, e.build(o=e.add(Op.EXP, x), raw=x))


def test_triple_transpose_is_one_transpose():
    b = GraphBuilder()
    x = b.input("x", (C, K))
    t3 = b.add(Op.TRANSPOSE, b.add(Op.TRANSPOSE, b.add(Op.TRANSPOSE, x)))
    after = dead_code(eliminate_transposes(b.build(o=t3)))
    assert expr(after, "o") == "transpose(x)"
    assert ops(after) == ["transpose"]


def test_transpose_of_mm_of_transposes_swaps_operands():
    b = GraphBuilder()
    a = b.input("a", (K, C))
    c = b.input("b", (V, K))
    m = b.add(Op.MM, b.add(Op.TRANSPOSE, a), b.add(Op.TRANSPOSE, c), operand_dtype="fp32")   # [C, V]
    after = eliminate_transposes(b.build(o=b.add(Op.TRANSPOSE, m)))                            # [V, C]

    e = GraphBuilder()
    a = e.input("a", (K, C))
    c = e.input("b", (V, K))
    e.add(Op.MM, e.add(Op.TRANSPOSE, a), e.add(Op.TRANSPOSE, c), operand_dtype="fp32")
    assert_same_graph(after, e.build(o=e.add(Op.MM, c, a, operand_dtype="fp32")))
    assert expr(dead_code(after), "o") == "mm(b, a, operand_dtype=fp32)"
    assert after[after.outputs["o"]].shape == (V, C)


def test_transpose_of_mm_with_one_plain_operand_is_kept():
    b = GraphBuilder()
    a = b.input("a", (K, C))
    c = b.input("b", (K, V))
    m = b.add(Op.MM, b.add(Op.TRANSPOSE, a), c)
    before = b.build(o=b.add(Op.TRANSPOSE, m))
    assert_same_graph(eliminate_transposes(before), before)


def test_transpose_of_full_swaps_shape():
    b = GraphBuilder()
    x = b.input("x", (K, C))
    f = b.add(Op.FULL, value=2.0, shape=(C, K))
    after = eliminate_transposes(b.build(o=b.add(Op.MUL, x, b.add(Op.TRANSPOSE, f))))

    e = GraphBuilder()
    x = e.input("x", (K, C))
    e.add(Op.FULL, value=2.0, shape=(C, K))
    swapped = e.add(Op.FULL, value=2.0, shape=(K, C))
    assert_same_graph(after, e.build(o=e.add(Op.MUL, x, swapped)))
    assert "transpose" not in ops(after)


def test_transpose_of_eye_is_an_eye():
    b = GraphBuilder()
    eye = b.add(Op.EYE, shape=(C, C))
    after = dead_code(eliminate_transposes(b.build(o=b.add(Op.TRANSPOSE, eye))))
    assert expr(after, "o") == "eye(shape=(C, C))"


def test_other_transposes_are_kept():
    b = GraphBuilder()
    x = b.input("x", (C, K))
    y = b.input("y", (C, K))
    s = b.add(Op.ADD, x, y)
    before = b.build(o=b.add(Op.TRANSPOSE, s), t=b.add(Op.TRANSPOSE, x))
    assert_same_graph(eliminate_transposes(before), before)


def test_users_of_cancelled_transposes_are_rewired():
    b = GraphBuilder()
    q = b.input("q", (C, K))
    k = b.input("k", (C, K))
    kt = b.add(Op.TRANSPOSE, k)
    ktt = b.add(Op.TRANSPOSE, kt)                             # [C, K] again
    o = b.add(Op.MM, b.add(Op.TRANSPOSE, q), ktt)             # [K, K]
    after = dead_code(eliminate_transposes(b.build(o=o)))
    assert expr(after, "o") == "mm(transpose(q), k)"
    assert ops(after) == ["transpose", "mm"]
