"""Lowering IR nodes to Triton lines (flexla/codegen/lower.py)."""
from passes.graphs import GraphBuilder

from flexla.codegen.lower import lines
from flexla.ir import C, K, V, Op


def test_a_transposed_operand_is_cast_before_its_transposition():
    """k^T v: the cast meets the load's widening (Triton then copies k to shared memory
    asynchronously), and the transposition read only by the product gets no line of its own."""
    b = GraphBuilder()
    k, v = b.input("k", (C, K)), b.input("v", (C, V))
    kt = b.add(Op.TRANSPOSE, k, name="kt")
    graph = b.build(kv=b.add(Op.MM, kt, v, name="kv"))
    out = lines(graph, ["kt", "kv"])
    assert len(out) == 1 and out[0].startswith("kv = tl.dot(tl.trans((")
    assert ".to(DOT_DTYPE))," in out[0]          # cast inside the transposition


def test_a_transposition_read_elsewhere_keeps_its_line():
    b = GraphBuilder()
    k, v = b.input("k", (C, K)), b.input("v", (C, V))
    kt = b.add(Op.TRANSPOSE, k, name="kt")
    kv = b.add(Op.MM, kt, v, name="kv")
    graph = b.build(kv=kv, kt2=b.add(Op.MUL, kt, kt, name="kt2"))
    assert lines(graph, ["kt", "kv", "kt2"])[0] == "kt = tl.trans(k)"
