"""Dead-code elimination: drop every node no output needs (inputs stay: they are the signature)."""
from ..ir import Graph, Op


def dead_code(graph: Graph) -> Graph:
    live = graph.ancestors(graph.outputs.values())
    return graph.replace([n for n in graph.nodes if n.name in live or n.op is Op.INPUT])
