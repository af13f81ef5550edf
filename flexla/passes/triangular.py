"""Triangular solves become products with an inverse: trisolve(A, B) -> mm(triinv(A), B).

A solve by substitution walks the C rows of a chunk one after another; the inverse is built once
per chunk from 16x16 blocks (codegen/templates/module.py.jinja: `_tri_inverse`) and then every
right-hand side costs one tensor-core product. Two solves with the same matrix share the inverse
through CSE (the delta rule solves for k and for v), and an upper solve with a transposed matrix,
which every backward of a lower solve contains, reuses the forward's inverse:

- trisolve(A, B)                -> mm(triinv(A), B)
- triinv(transpose(A), upper)   -> transpose(triinv(A, lower))
"""
from __future__ import annotations

from ..ir import Graph, Op
from ..ir.graph import make_node


def solve_by_inverse(graph: Graph) -> Graph:
    nodes, shapes = [], {}

    def emit(node):
        nodes.append(node)
        shapes[node.name] = node.shape
        return node.name

    for n in graph.nodes:
        if n.op is not Op.TRISOLVE:
            emit(n)
            continue
        a, b = n.inputs
        upper, unit = n.a["upper"], n.a["unit"]
        src = graph[a]   # the pass replaces only solves, so a solve's operands are original nodes
        if upper and src.op is Op.TRANSPOSE:   # (A^T)^-1 = (A^-1)^T with A lower
            inv = emit(make_node(f"{n.name}_inv", Op.TRIINV, (src.inputs[0],), dict(upper=False, unit=unit),
                                 shapes, n.loc))
            inv = emit(make_node(f"{n.name}_invT", Op.TRANSPOSE, (inv,), {}, shapes, n.loc))
        else:
            inv = emit(make_node(f"{n.name}_inv", Op.TRIINV, (a,), dict(upper=upper, unit=unit), shapes, n.loc))
        emit(make_node(n.name, Op.MM, (inv, b), {}, shapes, n.loc))
    return graph.replace(nodes)
