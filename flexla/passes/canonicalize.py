"""Canonical forms that later passes and the code generator can rely on.

- arithmetic on constants only is folded into one constant;
- x * 1, x + 0, x - 0, x / 1 and squeeze(unsqueeze(x)) become x;
- sum(..., keepdim=True) followed by a squeeze of the kept dim becomes sum(..., keepdim=False).
"""
from __future__ import annotations

import dataclasses
import math
import operator

from ..ir import Graph, Op
from ..ir.graph import make_node

FOLD = {Op.ADD: operator.add, Op.SUB: operator.sub, Op.MUL: operator.mul, Op.DIV: operator.truediv,
        Op.NEG: operator.neg, Op.EXP: math.exp, Op.LOG: math.log, Op.SQRT: math.sqrt,
        Op.MAXIMUM: max, Op.MINIMUM: min}
IDENTITY_RIGHT = {Op.MUL: 1.0, Op.DIV: 1.0, Op.ADD: 0.0, Op.SUB: 0.0}
IDENTITY_LEFT = {Op.MUL: 1.0, Op.ADD: 0.0}


def canonicalize(graph: Graph) -> Graph:
    nodes, mapping, index = [], {}, {}
    shapes = {}

    def const(name):
        n = index.get(name)
        return n.a["value"] if n is not None and n.op is Op.CONST else None

    for n in graph.nodes:
        n = dataclasses.replace(n, inputs=tuple(mapping.get(i, i) for i in n.inputs))
        ins = [index[i] for i in n.inputs]
        values = [const(i) for i in n.inputs]
        alias = None
        if n.op in FOLD and ins and all(v is not None for v in values):
            try:
                n = dataclasses.replace(n, op=Op.CONST, inputs=(), attrs=(("value", float(FOLD[n.op](*values))),))
            except (ValueError, ZeroDivisionError, OverflowError):
                pass
        elif n.op in IDENTITY_RIGHT and values[1] == IDENTITY_RIGHT[n.op] and ins[0].shape == n.shape \
                and ins[0].dtype == n.dtype:
            alias = n.inputs[0]
        elif n.op in IDENTITY_LEFT and values[0] == IDENTITY_LEFT[n.op] and ins[1].shape == n.shape \
                and ins[1].dtype == n.dtype:
            alias = n.inputs[1]
        elif n.op is Op.SQUEEZE and ins[0].op is Op.UNSQUEEZE and ins[0].a["dim"] % (len(n.shape) + 1) == \
                n.a["dim"] % (len(n.shape) + 1):
            alias = ins[0].inputs[0]
        elif n.op is Op.SQUEEZE and ins[0].op is Op.SUM and ins[0].a["keepdim"] and \
                tuple(ins[0].a["dims"]) == (n.a["dim"] % len(ins[0].shape),):
            src = ins[0]
            n = make_node(n.name, Op.SUM, src.inputs, {"dims": src.a["dims"], "keepdim": False}, shapes, n.loc)
        if alias is not None:
            mapping[n.name] = alias
            continue
        nodes.append(n)
        index[n.name] = n
        shapes[n.name] = n.shape
    return graph.replace(nodes, {k: mapping.get(v, v) for k, v in graph.outputs.items()})
