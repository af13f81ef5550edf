"""Transpose elimination: transposes cancel in pairs and move through elementwise ops and
constants, so a value is never transposed twice and the code generator sees fewer `tl.trans`.

- T(T(x)) -> x
- T(full) / T(eye) -> a full / eye of the transposed shape
- T(mm(a, b)) -> mm(T(b), T(a)) when both T(b) and T(a) are transposes to cancel
"""
from __future__ import annotations

import dataclasses
import itertools

from ..ir import Graph, Op
from ..ir.graph import make_node


def eliminate_transposes(graph: Graph) -> Graph:
    nodes, mapping, index, shapes = [], {}, {}, {}
    fresh = itertools.count()

    def emit(node):
        nodes.append(node)
        index[node.name] = node
        shapes[node.name] = node.shape
        return node.name

    for n in graph.nodes:
        n = dataclasses.replace(n, inputs=tuple(mapping.get(i, i) for i in n.inputs))
        if n.op is Op.TRANSPOSE:
            src = index[n.inputs[0]]
            if src.op is Op.TRANSPOSE:
                mapping[n.name] = src.inputs[0]
                continue
            if src.op is Op.FULL or src.op is Op.EYE:
                emit(dataclasses.replace(src, name=n.name, attrs=tuple(
                    (k, tuple(reversed(v)) if k == "shape" else v) for k, v in src.attrs), shape=n.shape))
                continue
            if src.op is Op.MM and all(index[i].op is Op.TRANSPOSE for i in src.inputs):
                a, b = (index[i].inputs[0] for i in src.inputs)
                emit(make_node(n.name, Op.MM, (b, a), src.a, shapes, n.loc))
                continue
        emit(n)
    return graph.replace(nodes, {k: mapping.get(v, v) for k, v in graph.outputs.items()})
