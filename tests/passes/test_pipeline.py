import pytest
from graphs import GraphBuilder, same_values

from flexla.ir import C, K, V, Graph, Op
from flexla.ir.verify import VerifyError
from flexla.passes import pipeline


def small_chunk():
    """o = q S + (q k^T) v, with a double transpose and a repeated product for the passes to
    remove."""
    b = GraphBuilder()
    q, k, v, S = b.input("q", (C, K)), b.input("k", (C, K)), b.input("v", (C, V)), b.input("S", (K, V))
    kt = b.add(Op.TRANSPOSE, b.add(Op.TRANSPOSE, b.add(Op.TRANSPOSE, k)))
    intra = b.add(Op.MM, b.add(Op.MM, q, kt), v)
    again = b.add(Op.MM, q, S)
    return b.build(o=b.add(Op.ADD, b.add(Op.MM, q, S), intra), again=again)


def test_the_passes_keep_every_output_and_its_value():
    before = small_chunk()
    after = pipeline.run_passes(before)
    assert set(after.outputs) == set(before.outputs)
    assert same_values(before, after)
    mms = [n for n in after.nodes if n.op is Op.MM]
    assert len(mms) == 3                        # q S computed once (CSE), not twice
    assert not any(n.op is Op.TRANSPOSE and after[n.inputs[0]].op is Op.TRANSPOSE for n in after.nodes)


def test_debug_prints_the_graph_after_every_pass(monkeypatch, capsys):
    monkeypatch.setenv("FLEXLA_DEBUG", "1")
    pipeline.run_passes(small_chunk())
    err = capsys.readouterr().err
    assert "traced ==" in err
    for p in pipeline.PASSES:
        assert f"after {p.__name__} ==" in err


def test_a_pass_that_breaks_the_graph_is_caught_where_it_runs(monkeypatch):
    def drops_a_node(graph: Graph) -> Graph:
        return Graph(graph.nodes[1:], graph.outputs, graph.meta)   # the first input goes missing
    monkeypatch.setattr(pipeline, "PASSES", [pipeline.PASSES[0], drops_a_node])
    with pytest.raises(VerifyError):
        pipeline.run_passes(small_chunk())
