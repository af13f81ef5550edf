"""Tiling: whether the V axis can be split across programs (the block sizes of a launch follow
from it at run time, `runtime/launch.py`).

V is separable when no op mixes lanes along V: every tile with a V dim is only combined
elementwise, transposed, reshaped, or multiplied by a matrix that does not contract over V. Then
programs that each own a slice of V compute exactly the slices of the whole result. K is always
kept whole inside a program.
"""
from __future__ import annotations

from ..ir import V, Graph, Op
from ..ir.ops import ELEMENTWISE

V_SAFE = ELEMENTWISE | {Op.TRANSPOSE, Op.UNSQUEEZE, Op.SQUEEZE, Op.EXPAND, Op.FULL, Op.INPUT, Op.CONST}


def v_split_blocker(graph: Graph) -> str | None:
    """The first node that mixes lanes along V, described, or None when V is separable."""
    for n in graph.nodes:
        shapes = [graph[i].shape for i in n.inputs] + [n.shape]
        if not any(V in s for s in shapes) or n.op in V_SAFE:
            continue
        if n.op is Op.MM and graph[n.inputs[0]].shape[1] != V:
            continue
        return f"{n.name} = {n.op.value}(...) {n.loc or ''}".strip()
    return None


def tile(graph: Graph) -> Graph:
    blocker = v_split_blocker(graph)
    return graph.replace(v_split=blocker is None, v_split_blocker=blocker)

