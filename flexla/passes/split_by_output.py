"""Splitting a per-chunk kernel by its outputs, where they share little work.

The chunk-parallel gradient kernel computes every input gradient of a chunk at once. Where the
gradients come from separate work (GLA: dv from the scores and dS; dq, dk and dg from do v^T, S
and dS, no product in common), one kernel holds the tiles of both at once and spills registers;
two kernels, each with its own outputs and only the work they need, hold half as much each
(FLA splits its gradient kernels the same way, by hand). The price is the inputs both read, and
any work both need, computed twice.

The split is the two groups of outputs whose larger one costs the fewest flops, among those where
the work computed twice costs at most MAX_SHARED of the whole; none where no such split exists
(the delta rules and KDA: their gradients all go through the same triangular solves). Splits
whose kernels may both take slices of K or V (passes/tiling.py) come first: at big head dims the
launcher slices those, where a kernel that must keep K and V whole holds two [K, V] tiles (RWKV-6:
dv alone and d_u with dq, dk, dw, rather than d_u with dv, whose sum over V keeps V whole there).

(A split that hands the shared work from the first kernel to the second through memory, as FLA's
delta-rule backward does by hand, was built and timed on an H200: slower for the delta rules and
KDA than the whole kernel, and no help at D = 256; removed. docs/performance.md, run 56.)

FLEXLA_SPLIT_GRADS=0 turns splitting off, =1 takes the best split whatever it shares (experiments);
the value is part of every cache key (flexla/options.py).
"""
from __future__ import annotations

import itertools

from ..ir import Graph
from .cost import flops
from .tiling import k_slices, v_split_blocker

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
            rank = (-sum(separable(graph.subgraph({r: graph.outputs[r] for r in group}))
                         for group in (first, second)), larger)
            if (mode == "1" or shared <= MAX_SHARED * total) and (best is None or rank < best[0]):
                best = (rank, first, second)
    if best is None:
        return whole
    _, first, second = best
    return [{r: graph.outputs[r] for r in first}, {r: graph.outputs[r] for r in second}]


def separable(graph: Graph) -> bool:
    """Whether a gradient kernel's programs may take slices of V, or of K."""
    return v_split_blocker(graph) is None or k_slices(graph).usable
