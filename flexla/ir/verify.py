"""Checks that a graph is well formed: defined before use, unique names, shapes that fit."""
from __future__ import annotations

from .graph import Graph
from .ops import Op, ShapeError, infer_shape


class VerifyError(ValueError):
    pass


def verify(graph: Graph) -> Graph:
    seen: dict[str, tuple] = {}
    for n in graph.nodes:
        if n.name in seen:
            raise VerifyError(f"node {n.name} defined twice")
        for i in n.inputs:
            if i not in seen:
                raise VerifyError(f"{n.name} uses {i} before it is defined")
        if n.op is not Op.INPUT:
            try:
                shape = infer_shape(n.op, [seen[i] for i in n.inputs], n.a)
            except ShapeError as e:
                raise VerifyError(f"{n.name} = {n.op.value}: {e}") from None
            if tuple(shape) != tuple(n.shape):
                raise VerifyError(f"{n.name}: shape {n.shape} recorded, {shape} inferred")
        if len(n.shape) > 2:
            raise VerifyError(f"{n.name}: tiles have at most two dimensions, got {n.shape}")
        seen[n.name] = n.shape
    for role, name in graph.outputs.items():
        if name not in seen:
            raise VerifyError(f"output {role} refers to unknown node {name}")
    return graph
