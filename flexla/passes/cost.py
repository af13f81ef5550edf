"""The cost model of the partitioning passes: flops of a node at a typical tile size."""
from __future__ import annotations

import sympy

from ..ir import C, K, V, Graph, Op

TYPICAL = {C: 64, K: 128, V: 128}


def numel(shape) -> int:
    return int(sympy.prod([sympy.sympify(d).subs(TYPICAL) for d in shape]) if shape else 1)


def flops(graph: Graph, name: str) -> int:
    n = graph[name]
    if n.op is Op.MM:
        return 2 * numel(n.shape) * numel(graph[n.inputs[0]].shape[1:])
    if n.op in (Op.INPUT, Op.CONST):
        return 0
    return numel(n.shape)
