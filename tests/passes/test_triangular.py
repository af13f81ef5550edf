from graphs import GraphBuilder, expr, ops

from flexla.ir import C, K, V, Op
from flexla.passes.cse import common_subexpressions
from flexla.passes.dce import dead_code
from flexla.passes.precision import assign_precision
from flexla.passes.triangular import solve_by_inverse


def test_a_solve_becomes_a_product_with_the_inverse():
    b = GraphBuilder()
    a, y = b.input("a", (C, C)), b.input("y", (C, K))
    after = solve_by_inverse(b.build(o=b.add(Op.TRISOLVE, a, y, upper=False, unit=True)))
    assert expr(after, "o") == "mm(triinv(a, unit=True, upper=False), y)"
    assert "trisolve" not in ops(after)


def test_two_solves_with_one_matrix_share_its_inverse():
    b = GraphBuilder()
    a, k, v = b.input("a", (C, C)), b.input("k", (C, K)), b.input("v", (C, V))
    g = b.build(w=b.add(Op.TRISOLVE, a, k, upper=False, unit=True), u=b.add(Op.TRISOLVE, a, v, upper=False, unit=True))
    after = dead_code(common_subexpressions(solve_by_inverse(g)))
    assert ops(after).count("triinv") == 1


def test_an_upper_solve_with_a_transpose_reuses_the_lower_inverse():
    b = GraphBuilder()
    a, y, dy = b.input("a", (C, C)), b.input("y", (C, K)), b.input("dy", (C, K))
    fwd = b.add(Op.TRISOLVE, a, y, upper=False, unit=False)
    bwd = b.add(Op.TRISOLVE, b.add(Op.TRANSPOSE, a), dy, upper=True, unit=False)
    after = dead_code(common_subexpressions(solve_by_inverse(b.build(x=fwd, back=bwd))))
    assert expr(after, "back") == "mm(transpose(triinv(a, unit=False, upper=False)), dy)"
    assert ops(after).count("triinv") == 1


def test_an_upper_solve_with_any_other_matrix_keeps_upper():
    b = GraphBuilder()
    a, y = b.input("a", (C, C)), b.input("y", (C, K))
    after = solve_by_inverse(b.build(o=b.add(Op.TRISOLVE, a, y, upper=True, unit=True)))
    assert expr(after, "o") == "mm(triinv(a, unit=True, upper=True), y)"


def test_products_with_an_inverse_take_operands_with_fp32_range():
    b = GraphBuilder()
    a, y = b.input("a", (C, C)), b.input("y", (C, K))
    after = assign_precision(solve_by_inverse(b.build(o=b.add(Op.TRISOLVE, a, y, upper=False, unit=True))))
    assert [n.a["operand_dtype"] for n in after.nodes if n.op is Op.MM] == ["range"]
