"""Common-subexpression elimination: nodes with the same op, inputs and attributes become one."""
import dataclasses

from ..ir import Graph


def common_subexpressions(graph: Graph) -> Graph:
    seen, mapping, nodes = {}, {}, []
    for n in graph.nodes:
        n = dataclasses.replace(n, inputs=tuple(mapping.get(i, i) for i in n.inputs))
        key = n.key() if n.op.name != "INPUT" else n.name
        if key in seen:
            mapping[n.name] = seen[key]
        else:
            seen[key] = n.name
            nodes.append(n)
    return graph.replace(nodes, {k: mapping.get(v, v) for k, v in graph.outputs.items()})
