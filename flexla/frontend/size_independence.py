"""The check that a trace does not depend on the tile sizes it was made with.

flexla compiles one kernel for every C, K and V, from a trace at one set of sizes. A callback that
computes a number from a size (`k.shape[1] ** -0.5`, `q.shape[0] - 1`) would bake that number in.
Tracing a second time at other sizes and comparing the two graphs op by op catches it.
"""
from __future__ import annotations

from ..ir import Graph
from .errors import CallbackError
from .locations import callback_of


def check_size_independent(first: Graph, second: Graph) -> None:
    for a, b in zip(first.nodes, second.nodes):
        if a.key() != b.key() or a.shape != b.shape:
            where = a.loc.split(", ", 1)[1] if a.loc and ", " in a.loc else None
            raise CallbackError(
                callback_of(a.loc), where,
                f"`{a.op.value}` here depends on the tile sizes the callbacks were traced with "
                f"({dict(a.attrs)} vs {dict(b.attrs)} at other sizes)",
                "flexla compiles one kernel for every chunk size and head dim: do not compute numbers "
                "from .shape (use sums, or pass the number as an extra input)")
    if len(first.nodes) != len(second.nodes):
        raise CallbackError("intra/update/merge", None, "the callbacks trace to different graphs at different "
                            "tile sizes (control flow on a shape?)", "avoid branching on tensor shapes")
