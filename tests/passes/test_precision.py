import pytest
from graphs import GraphBuilder, assert_same_graph, simple_gla_forward

from flexla.codegen.lower import lines, var
from flexla.ir import C, K, V, Op
from flexla.passes.precision import assign_precision, read_as_dot_operand


def _dtypes(graph):
    return {n.name: n.a["operand_dtype"] for n in graph.nodes if n.op is Op.MM}


def test_plain_mm_gets_input_dtype():
    b = GraphBuilder()
    q = b.input("q", (C, K))
    k = b.input("k", (C, K))
    v = b.input("v", (C, V))
    s = b.add(Op.MM, q, b.add(Op.TRANSPOSE, k))
    after = assign_precision(b.build(o=b.add(Op.MM, s, v)))

    e = GraphBuilder()
    q = e.input("q", (C, K))
    k = e.input("k", (C, K))
    v = e.input("v", (C, V))
    s = e.add(Op.MM, q, e.add(Op.TRANSPOSE, k), operand_dtype="input")
    assert_same_graph(after, e.build(o=e.add(Op.MM, s, v, operand_dtype="input")))


@pytest.mark.parametrize("op", [Op.CUMSUM, Op.REVCUMSUM])
def test_mm_of_cumulative_gate_stays_fp32(op):
    b = GraphBuilder()
    g = b.input("g", (C, K))
    v = b.input("v", (C, V))
    gc = b.add(op, g, dim=0)
    after = assign_precision(b.build(o=b.add(Op.MM, b.add(Op.TRANSPOSE, gc), v)))

    e = GraphBuilder()
    g = e.input("g", (C, K))
    v = e.input("v", (C, V))
    gc = e.add(op, g, dim=0)
    assert_same_graph(after, e.build(o=e.add(Op.MM, e.add(Op.TRANSPOSE, gc), v, operand_dtype="fp32")))


def test_sensitivity_flows_through_magnitude_preserving_ops():
    # gc[-1] - gc, broadcast and unsqueezed, then used as the right operand of an mm
    b = GraphBuilder()
    g = b.input("g", (C,))
    x = b.input("x", (K, C))
    gc = b.add(Op.CUMSUM, g, dim=0)
    last = b.add(Op.SELECT, gc, dim=0, index=-1)
    d = b.add(Op.NEG, b.add(Op.SUB, last, gc))
    col = b.add(Op.EXPAND, b.add(Op.UNSQUEEZE, d, dim=1), shape=(C, V))
    after = assign_precision(b.build(o=b.add(Op.MM, x, col)))
    assert _dtypes(after) == {after.outputs["o"]: "fp32"}


def test_an_inverse_takes_the_dtype_with_fp32_range_and_a_cumulative_gate_wins():
    """Products by a triangular inverse (and what keeps its magnitude) take EXP_DTYPE's range
    (bf16 for bf16 inputs, fp32 for fp16 ones); next to a cumulative gate they stay fp32."""
    b = GraphBuilder()
    a, y, g = b.input("a", (C, C)), b.input("y", (C, V)), b.input("g", (C, C))
    inv = b.add(Op.NEG, b.add(Op.TRIINV, a, upper=False, unit=True))
    applied = b.add(Op.MM, inv, y)
    gated = b.add(Op.MM, b.add(Op.ADD, inv, b.add(Op.CUMSUM, g, dim=0)), y)
    after = assign_precision(b.build(o=applied, p=gated))
    assert _dtypes(after) == {applied: "range", gated: "fp32"}
    lowered = lines(after, [n.name for n in after.nodes])
    assert any("EXP_DTYPE" in ln and ln.startswith(var(applied)) for ln in lowered)


def test_exp_of_cumulative_gate_is_input_dtype():
    b = GraphBuilder()
    g = b.input("g", (C, K))
    v = b.input("v", (C, V))
    decay = b.add(Op.EXP, b.add(Op.CUMSUM, g, dim=0))
    after = assign_precision(b.build(o=b.add(Op.MM, b.add(Op.TRANSPOSE, decay), v)))
    assert _dtypes(after) == {after.outputs["o"]: "input"}


def test_existing_operand_dtype_is_overwritten_and_other_nodes_untouched():
    b = GraphBuilder()
    q = b.input("q", (C, K))
    k = b.input("k", (K, C))
    m = b.add(Op.MM, q, k, operand_dtype="fp32")
    before = b.build(o=b.add(Op.EXP, m))
    after = assign_precision(before)
    assert _dtypes(after) == {m: "input"}
    assert [n for n in after.nodes if n.op is not Op.MM] == [n for n in before.nodes if n.op is not Op.MM]


def test_simple_gla_forward():
    graph, n = simple_gla_forward()
    after = assign_precision(graph)
    # decays are exponentiated before they meet a matrix product: every mm is tensor-core dtype
    assert _dtypes(after) == {n["qk"]: "input", n["o_intra"]: "input", n["kv"]: "input", n["inter"]: "input"}


def test_read_as_dot_operand():
    """A state read only as a cast tensor-core operand (here through a transpose) may be kept in
    the input dtype between kernels; one that is also used elementwise may not."""
    b = GraphBuilder()
    S, q, n = b.input("S", (K, V)), b.input("q", (C, K)), b.input("n", (K,))
    o = b.add(Op.MM, q, S)
    back = b.add(Op.MM, b.add(Op.TRANSPOSE, S), b.add(Op.TRANSPOSE, q))
    qn = b.add(Op.MUL, q, b.add(Op.UNSQUEEZE, n, dim=0))
    graph = assign_precision(b.build(o=o, x=back, y=qn))
    assert read_as_dot_operand(graph, "S")
    assert not read_as_dot_operand(graph, "n")
    assert not read_as_dot_operand(graph, o)            # an output is stored as it is

    e = GraphBuilder()
    gc, v = e.input("gc", (C, K)), e.input("v", (C, V))
    cs = e.add(Op.CUMSUM, gc, dim=0)
    graph = assign_precision(e.build(o=e.add(Op.MM, e.add(Op.TRANSPOSE, cs), v)))
    assert not read_as_dot_operand(graph, cs)           # an fp32 operand (a cumulative gate)
