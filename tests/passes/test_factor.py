from graphs import GraphBuilder, assert_same_graph, expr, normalize, ops, same_values

from flexla.ir import C, K, V, Op, verify
from flexla.passes.cse import common_subexpressions
from flexla.passes.dce import dead_code
from flexla.passes.factor import factor_products


def run(graph):
    return dead_code(common_subexpressions(verify(factor_products(graph))))


def test_shared_left_operand_merges():
    b = GraphBuilder()
    a, x, y = b.input("a", (C, K)), b.input("x", (K, V)), b.input("y", (K, V))
    before = b.build(o=b.add(Op.ADD, b.add(Op.MM, a, x), b.add(Op.MM, a, y)))
    after = run(before)
    assert expr(after, "o") == "mm(a, add(x, y))"
    assert same_values(before, after)


def test_shared_right_operand_merges_with_signs():
    b = GraphBuilder()
    x, y, a = b.input("x", (C, K)), b.input("y", (C, K)), b.input("a", (K, V))
    before = b.build(o=b.add(Op.SUB, b.add(Op.MM, x, a), b.add(Op.MM, b.add(Op.NEG, y), a)))
    after = run(before)
    assert expr(after, "o") == "mm(add(x, y), a)"        # x a - (-y) a
    assert same_values(before, after)


def test_transposed_products_meet_an_existing_sum():
    """The delta rule's dk: -(S x^T)^T - (S y^T)^T, with x + y already computed elsewhere."""
    b = GraphBuilder()
    s, x, y = b.input("S", (K, V)), b.input("x", (C, V)), b.input("y", (C, V))
    xy = b.add(Op.ADD, x, y)
    p1 = b.add(Op.TRANSPOSE, b.add(Op.MM, s, b.add(Op.TRANSPOSE, b.add(Op.NEG, x))))
    p2 = b.add(Op.TRANSPOSE, b.add(Op.MM, s, b.add(Op.TRANSPOSE, b.add(Op.NEG, y))))
    before = b.build(o=b.add(Op.ADD, p1, p2), g=b.add(Op.EXP, xy))
    after = run(before)
    assert ops(after).count("mm") == 1
    assert expr(after, "o") == "neg(mm(add(x, y), transpose(S)))"
    assert after[after[after.outputs["o"]].inputs[0]].inputs[0] == after[after.outputs["g"]].inputs[0]   # CSE
    assert same_values(before, after)


def test_nested_sum_with_other_terms():
    """The delta rule's state gradient: dS + q^T do - w^T a - w^T b."""
    b = GraphBuilder()
    ds, w, q, do = b.input("dS", (K, V)), b.input("w", (K, C)), b.input("q", (K, C)), b.input("do", (C, V))
    a, c = b.input("a", (C, V)), b.input("c", (C, V))
    s1 = b.add(Op.ADD, ds, b.add(Op.MM, w, b.add(Op.NEG, a)))
    s2 = b.add(Op.ADD, s1, b.add(Op.MM, w, b.add(Op.NEG, c)))
    before = b.build(o=b.add(Op.ADD, s2, b.add(Op.MM, q, do)))
    after = run(before)
    assert ops(after).count("mm") == 2
    assert same_values(before, after)


def test_product_used_elsewhere_stays():
    b = GraphBuilder()
    a, x, y = b.input("a", (C, K)), b.input("x", (K, V)), b.input("y", (K, V))
    p = b.add(Op.MM, a, x)
    before = b.build(o=b.add(Op.ADD, p, b.add(Op.MM, a, y)), p=p)
    assert normalize(run(before)) == normalize(before)


def test_different_operand_dtypes_stay_apart():
    b = GraphBuilder()
    a, x, y = b.input("a", (C, K)), b.input("x", (K, V)), b.input("y", (K, V))
    before = b.build(o=b.add(Op.ADD, b.add(Op.MM, a, x, operand_dtype="fp32"),
                             b.add(Op.MM, a, y, operand_dtype="input")))
    assert normalize(run(before)) == normalize(before)


def test_sum_without_shared_operands_is_unchanged():
    b = GraphBuilder()
    a, x, c, y = b.input("a", (C, K)), b.input("x", (K, V)), b.input("c", (C, K)), b.input("y", (K, V))
    before = b.build(o=b.add(Op.ADD, b.add(Op.MM, a, x), b.add(Op.MM, c, y)))
    assert_same_graph(factor_products(before), before)


def test_broadcasting_add_is_not_read_through():
    """a x + r, r [C, 1], is one term of the outer sum: a x does not meet a y."""
    b = GraphBuilder()
    a, x, y = b.input("a", (C, K)), b.input("x", (K, V)), b.input("y", (K, V))
    r = b.input("r", (C, 1))
    inner = b.add(Op.ADD, b.add(Op.MM, a, x), r)
    before = b.build(o=b.add(Op.ADD, inner, b.add(Op.MM, a, y)))
    after = run(before)
    assert ops(after).count("mm") == 2


def test_sum_under_a_broadcasting_add_still_merges():
    """(a x + a y) + r, r [C, 1]: the outer add cannot be read through, so the inner sum is a root."""
    b = GraphBuilder()
    a, x, y = b.input("a", (C, K)), b.input("x", (K, V)), b.input("y", (K, V))
    inner = b.add(Op.ADD, b.add(Op.MM, a, x), b.add(Op.MM, a, y))
    after = run(b.build(o=b.add(Op.ADD, inner, b.input("r", (C, 1)))))
    assert expr(after, "o") == "add(mm(a, add(x, y)), r)"
