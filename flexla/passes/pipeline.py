"""The passes, in the order they run. Each is a function Graph -> Graph; the verifier runs after
every one, and FLEXLA_DEBUG=1 prints the graph after every one."""
from __future__ import annotations

import os
import sys

from ..ir import Graph, verify
from .canonicalize import canonicalize
from .cse import common_subexpressions
from .dce import dead_code
from .factor import factor_products
from .precision import assign_precision
from .scale_motion import move_scalings
from .tiling import tile
from .transpose_elimination import eliminate_transposes
from .triangular import solve_by_inverse

PASSES = [
    canonicalize,             # fold constants, drop identity ops (x*1, squeeze(unsqueeze(x)))
    eliminate_transposes,     # T(T(x)) -> x; the vjp is full of them
    solve_by_inverse,         # trisolve(A, B) -> mm(triinv(A), B), one inverse per matrix
    common_subexpressions,    # callbacks recompute g[-1] and friends; keep one of each
    factor_products,          # A B + A C -> A (B + C); the vjp sums products term by term
    move_scalings,            # (r a) b -> r (a b) where a is an input: streamed to the tensor cores
    common_subexpressions,    # the new sums often exist already (the gradient of a sum)
    canonicalize,             # CSE exposes more identities
    dead_code,                # what no output needs (the vjp's unused forward values)
    assign_precision,         # tensor-core operand dtypes of every mm
    tile,                     # may V be split across programs? (recorded in graph.meta)
]
# After these, partition.py splits the graph into kernels and schedule.py picks one at launch.


def debug() -> bool:
    return os.environ.get("FLEXLA_DEBUG", "") not in ("", "0")


def run_passes(graph: Graph) -> Graph:
    verify(graph)
    if debug():
        print(f"== {graph.meta.get('name')}: traced ==\n{graph}\n", file=sys.stderr)
    for p in PASSES:
        graph = verify(p(graph))
        if debug():
            print(f"== {graph.meta.get('name')}: after {p.__name__} ==\n{graph}\n", file=sys.stderr)
    return graph
