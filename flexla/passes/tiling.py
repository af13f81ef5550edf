"""Tiling: whether the V axis, and the K axis of a state scan or a gradient kernel, can be split
across programs (the block sizes of a launch follow from it at run time, `runtime/launch.py`).

V is separable when no op mixes lanes along V: every tile with a V dim is only combined
elementwise, transposed, reshaped, or multiplied by a matrix that does not contract over V. Then
programs that each own a slice of V compute exactly the slices of the whole result.

K is kept whole except in the state scans, which the launcher splits along K too when they
would otherwise leave the GPU idle (a long sequence and few heads), and in the per-chunk gradient
kernels whose [K, V] states would be too big for one program (GLA's dq/dk/dg at K = V = 256,
`codegen/kernels.py` marks them). The K rule looks at the axis
each op works along, so a cumulative sum over the chunk of a [C, K] gate or a product contracting
the chunk stays separable; a product contracting K (the delta rule's w S) does not.
"""
from __future__ import annotations

from ..ir import K, V, Graph, Op
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


def mixes(graph: Graph, n, dim) -> bool:
    """Whether node n combines lanes along dim (the K rule above)."""
    shapes = [graph[i].shape for i in n.inputs] + [n.shape]
    if not any(dim in s for s in shapes) or n.op in V_SAFE:
        return False
    src = graph[n.inputs[0]].shape if n.inputs else n.shape
    if n.op in (Op.SUM, Op.MAX):
        return any(src[d] == dim for d in n.a["dims"])
    if n.op in (Op.CUMSUM, Op.REVCUMSUM, Op.SELECT):
        return src[n.a["dim"]] == dim
    if n.op is Op.PLACE:
        return n.shape[n.a["dim"]] == dim
    if n.op in (Op.MM, Op.GATED_SCORES):          # contract their first operand's second axis
        return src[1] == dim
    if n.op in (Op.GATED_APPLY, Op.GATED_APPLY_T):  # mix rows of x ([N, M]) only
        return src[0] == dim
    return True                                   # tril, eye, arange, solves: lanes by index


def k_split_blocker(graph: Graph) -> str | None:
    """The first node that mixes lanes along K, described, or None when K is separable."""
    for n in graph.nodes:
        if mixes(graph, n, K):
            return f"{n.name} = {n.op.value}(...) {n.loc or ''}".strip()
    return None


def tile(graph: Graph) -> Graph:
    blocker = v_split_blocker(graph)
    return graph.replace(v_split=blocker is None, v_split_blocker=blocker)

