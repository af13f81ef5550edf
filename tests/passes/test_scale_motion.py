from graphs import GraphBuilder, expr, same_values

from flexla.ir import C, K, V, Op, verify
from flexla.passes.dce import dead_code
from flexla.passes.scale_motion import move_scalings


def run(graph):
    return dead_code(verify(move_scalings(graph)))


def test_a_row_scaling_and_a_scalar_go_to_the_result():
    b = GraphBuilder()        # (q * scale * e[:, None]) S, as in a chunk's inter-chunk output
    q, scale, e, s = b.input("q", (C, K)), b.input("scale"), b.input("e", (C, 1)), b.input("S", (K, V))
    before = b.build(o=b.add(Op.MM, b.add(Op.MUL, b.add(Op.MUL, q, scale), e), s))
    after = run(before)
    assert expr(after, "o") == "mul(mul(mm(q, S), e), scale)"
    assert same_values(before, after)


def test_a_column_scaling_of_the_right_operand_goes_to_the_result():
    b = GraphBuilder()
    a, x, r = b.input("a", (C, K)), b.input("x", (K, V)), b.input("r", (1, V))
    before = b.build(o=b.add(Op.MM, a, b.add(Op.MUL, x, r)))
    after = run(before)
    assert expr(after, "o") == "mul(mm(a, x), r)"
    assert same_values(before, after)


def test_a_contracted_scaling_moves_onto_a_computed_operand():
    b = GraphBuilder()        # (k * e[:, None])^T (u - w S): the gated delta rule's state update
    k, e, u, w = b.input("k", (C, K)), b.input("e", (C, 1)), b.input("u", (C, V)), b.input("w", (C, V))
    before = b.build(o=b.add(Op.MM, b.add(Op.TRANSPOSE, b.add(Op.MUL, k, e)), b.add(Op.SUB, u, w)))
    after = run(before)
    assert expr(after, "o") == "mm(transpose(k), mul(sub(u, w), e))"
    assert same_values(before, after)


def test_a_contracted_scaling_moves_from_a_transposed_input_onto_one_as_it_lies():
    b = GraphBuilder()        # (k * e[:, None])^T v: simple GLA's state update, scaled on v as FLA's is
    k, e, v = b.input("k", (C, K)), b.input("e", (C, 1)), b.input("v", (C, V))
    before = b.build(o=b.add(Op.MM, b.add(Op.TRANSPOSE, b.add(Op.MUL, k, e)), v))
    after = run(before)
    assert expr(after, "o") == "mm(transpose(k), mul(v, e))"
    assert same_values(before, after)


def test_left_as_it_is_where_moving_gains_nothing_or_does_not_fit():
    b = GraphBuilder()
    k, e, v = b.input("k", (C, K)), b.input("e", (C, 1)), b.input("v", (C, V))
    u, w, r, s = b.input("u", (C, K)), b.input("w", (C, K)), b.input("r", (1, K)), b.input("S", (K, V))
    x, y = b.input("x", (K, C)), b.input("y", (V, C))
    both_inputs = b.add(Op.MM, b.add(Op.MUL, x, b.input("f", (1, C))), v)     # onto v: not transposed either
    both_transposed = b.add(Op.MM, b.add(Op.TRANSPOSE, b.add(Op.MUL, k, e)), b.add(Op.TRANSPOSE, y))
    computed = b.add(Op.MM, b.add(Op.MUL, b.add(Op.SUB, u, w), e), s)            # base not an input
    wrong_way = b.add(Op.MM, b.add(Op.MUL, u, r), b.add(Op.TRANSPOSE, w))      # [1, K] would need a transpose
    before = b.build(a=both_inputs, b=computed, c=wrong_way, d=both_transposed)
    assert run(before).nodes == before.nodes

