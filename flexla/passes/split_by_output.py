"""Splitting a per-chunk kernel by its outputs, where they share little work.

The chunk-parallel gradient kernel computes every input gradient of a chunk at once. Where the
gradients come from separate work (GLA: dv from the scores and dS; dq, dk and dg from do v^T, S
and dS, no product in common), one kernel holds the tiles of both at once and spills registers;
two kernels, each with its own outputs and only the work they need, hold half as much each
(FLA splits its gradient kernels the same way, by hand). The price is the inputs both read, and
any work both need, computed twice.

The split is the two groups of outputs whose larger one costs the fewest flops, among those where
the work computed twice costs at most MAX_SHARED of the whole; none where no such split exists
(the delta rules and KDA: their gradients all go through the same triangular solves).

Where the shared work is large, the split can instead hand it over (`staged_split`): the first
kernel computes its outputs and writes the shared tensors the second kernel's own work reads, the
second reads them back, so nothing is computed twice and the price is their bytes (FLA's delta-rule
backward hands dw and du from one kernel to the next the same way, by hand).

FLEXLA_SPLIT_GRADS=0 turns splitting off, =1 takes the best split whatever it shares, =stage takes
the best handed-over split (experiments); the value is part of every cache key (flexla/options.py).
"""
from __future__ import annotations

import itertools

from ..ir import C, Graph, Op
from ..ir.graph import Node
from .cost import flops, numel

MAX_SHARED = 0.1


def output_groups(graph: Graph, mode: str = "auto") -> list[dict[str, str]]:
    """The graph's outputs ({role: node}) in one group, or two when splitting pays (see above)."""
    roles = list(graph.outputs)
    whole = [dict(graph.outputs)]
    if mode == "0" or len(roles) < 2:
        return whole
    needs = {r: graph.ancestors([graph.outputs[r]]) | {graph.outputs[r]} for r in roles}
    cost = lambda names: sum(flops(graph, n) for n in names)
    total = cost(set().union(*needs.values()))
    best = None
    for size in range(1, len(roles)):
        for first in itertools.combinations(roles, size):
            if roles[0] not in first:          # each split once; the first role's group comes first
                continue
            second = [r for r in roles if r not in first]
            a = set().union(*(needs[r] for r in first))
            b = set().union(*(needs[r] for r in second))
            shared, larger = cost(a & b), max(cost(a), cost(b))
            if (mode == "1" or shared <= MAX_SHARED * total) and (best is None or larger < best[0]):
                best = (larger, first, second)
    if best is None:
        return whole
    _, first, second = best
    return [{r: graph.outputs[r] for r in first}, {r: graph.outputs[r] for r in second}]


# work worth handing over rather than doing again: products, solves, scans and reductions (and what
# is built on them); a tensor made from the inputs by elementwise ops alone is recomputed instead
WORK = {Op.MM, Op.TRIINV, Op.CUMSUM, Op.REVCUMSUM, Op.SUM, Op.MAX, Op.SELECT}


def staged_split(graph: Graph) -> tuple[dict, dict, list[str]] | None:
    """Two groups of outputs and the tensors handed from the first kernel to the second (see
    above): the split whose larger kernel costs the fewest flops, then the fewest handed-over
    elements. Only chunk tiles are handed over (a [K, V] per chunk would cost a state's bytes)."""
    roles = list(graph.outputs)
    worked = graph.descendants([n.name for n in graph.nodes if n.op in WORK])
    needs = {r: graph.ancestors([graph.outputs[r]]) for r in roles}
    cost = lambda names: sum(flops(graph, n) for n in names)
    best = None
    for size in range(1, len(roles)):
        for first in itertools.combinations(roles, size):
            second = [r for r in roles if r not in first]
            a = set().union(*(needs[r] for r in first))
            b = set().union(*(needs[r] for r in second))
            own = [graph[n] for n in b - a]
            handed = {i for n in own for i in n.inputs if i in a and i in worked}
            handed |= {graph.outputs[r] for r in second if graph.outputs[r] in a}
            if any(C not in graph[h].shape or 1 in graph[h].shape for h in handed):
                continue
            # the second kernel reads what is handed over and recomputes the cheap rest it needs
            cut = reading(graph, handed)
            second_cost = sum(flops(cut, n) for n in cut.ancestors([graph.outputs[r] for r in second]))
            score = (max(cost(a), second_cost), sum(numel(graph[h].shape) for h in handed))
            if best is None or score < best[0]:
                best = (score, first, second, handed)
    if best is None:
        return None
    _, first, second, handed = best
    return ({r: graph.outputs[r] for r in first}, {r: graph.outputs[r] for r in second},
            [n.name for n in graph.nodes if n.name in handed])


def reading(graph: Graph, names) -> Graph:
    """`graph` with the named nodes read from memory (inputs) instead of computed."""
    return graph.replace([Node(n.name, Op.INPUT, (), (("role", n.name),), n.shape, n.dtype, n.loc)
                          if n.name in names else n for n in graph.nodes])
