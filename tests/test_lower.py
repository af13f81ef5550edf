"""Lowering IR nodes to Triton lines (flexla/codegen/lower.py)."""
from passes.graphs import GraphBuilder

from flexla.codegen.kernels import Access, _at_first_use, _at_first_use_by_phase
from flexla.codegen.lower import lines, named_lines, var
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


def test_a_line_reads_through_a_left_out_transposition():
    b = GraphBuilder()
    k, v = b.input("k", (C, K)), b.input("v", (C, V))
    kt = b.add(Op.TRANSPOSE, k, name="kt")
    graph = b.build(kv=b.add(Op.MM, kt, v, name="kv"))
    assert named_lines(graph, ["kt", "kv"]) == [("kv", lines(graph, ["kv"])[0], {"k", "v"})]


def test_loads_come_just_before_their_first_reader():
    """What a gradient kernel runs after its V loop (codegen/kernels._at_first_use): each load
    right before the line that first reads it, so its shared-memory copy lives no longer."""
    b = GraphBuilder()
    q, k, g = b.input("q", (C, K)), b.input("k", (C, K)), b.input("g", (C,))
    qk = b.add(Op.MM, q, b.add(Op.TRANSPOSE, k, name="kt"), name="qk")
    graph = b.build(out=b.add(Op.MUL, qk, b.add(Op.UNSQUEEZE, g, dim=1, name="gu"), name="out"))
    loads = [Access(var(n), f"{n}_ptr", "token") for n in ("g", "k", "q", "unused")]
    out = _at_first_use(graph, ["kt", "qk", "gu", "out"], loads)
    assert [x if isinstance(x, str) else x.var for x in out] == [
        "k", "q", lines(graph, ["qk"])[0], "g", *lines(graph, ["gu", "out"]), "unused"]


def test_a_load_only_a_store_reads_goes_to_the_last_phase_with_lines():
    b = GraphBuilder()
    q, k = b.input("q", (C, K)), b.input("k", (C, K))
    graph = b.build(out=b.add(Op.MUL, q, q, name="qq"), k_out=k)
    loads = [Access(var(n), f"{n}_ptr", "token") for n in ("q", "k")]
    out = _at_first_use_by_phase(graph, {"intra": ["qq"], "merge": [], "update": []}, loads)
    assert [x if isinstance(x, str) else x.var for x in out["intra"]] == ["q", lines(graph, ["qq"])[0], "k"]
    assert out["merge"] == out["update"] == []
