from graphs import GraphBuilder

from flexla.ir import C, K, V, Op
from flexla.passes.cost import TYPICAL, flops, numel


def test_numel_substitutes_the_typical_tile_sizes():
    assert numel((C, K)) == TYPICAL[C] * TYPICAL[K] == 64 * 128
    assert numel((C,)) == 64
    assert numel(()) == 1                       # a scalar


def test_a_product_costs_two_flops_per_multiply_add_over_its_contraction():
    b = GraphBuilder()
    q, k, S = b.input("q", (C, K)), b.input("k", (C, K)), b.input("S", (K, V))
    inter = b.add(Op.MM, q, S)                                  # [C, K] x [K, V]: K = 128 deep
    kk = b.add(Op.MM, b.add(Op.TRANSPOSE, k), q)                # [K, C] x [C, K]: C = 64 deep
    g = b.build(o=inter, kk=kk)
    assert flops(g, inter) == 2 * 64 * 128 * 128
    assert flops(g, kk) == 2 * 128 * 128 * 64


def test_elementwise_ops_cost_one_flop_per_element_and_inputs_nothing():
    b = GraphBuilder()
    x = b.input("x", (C, K))
    e = b.add(Op.EXP, x)
    one = b.const(1.0)
    g = b.build(o=b.add(Op.MUL, e, one))
    assert flops(g, e) == 64 * 128
    assert flops(g, x) == 0 and flops(g, one) == 0
