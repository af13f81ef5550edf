"""The backward's prep kernel also stages what the forward's state scan reads.

The chunk-parallel backward recomputes the states entering every chunk with the forward's scan,
which reads tensors the forward's prep kernel staged (the delta rule's w and u, a variant's
decays). The backward's own prep kernel computes much of the same (the delta rule's triangular
inverse and w again). So the forward's staged tensors are grafted into the backward graph, each
sharing every node the backward already has (the same expression over the same inputs, as in
forward_output.py), and partition.py stages them with the backward's own: the backward then runs
one prep kernel instead of two, and a gradient kernel that would recompute one of them (the delta
rule's u) reads it back. The grafted nodes are outputs of nothing: only the prep kernel's graph
keeps them. The backward's prep then runs before the forward's scan, so this holds only where it
reads no state (mLSTM's stages its normaliser q n, which does).
"""
from __future__ import annotations

import dataclasses

from ..ir import Graph, Op
from .forward_output import expressions


def _in_backward(bwd: Graph, fwd: Graph) -> tuple[dict, dict]:
    """(expression id -> the first backward node computing it, forward node -> its expression id)."""
    table = {}
    bwd_ids, fwd_ids = expressions(bwd, table), expressions(fwd, table)
    found = {}
    for n in bwd.nodes:
        found.setdefault(bwd_ids[n.name], n.name)
    return found, fwd_ids


def graft_forward_staged(bwd: Graph, fwd: Graph, staged: list[str]) -> tuple[Graph, list[str]]:
    """`bwd` with the forward nodes `staged` (and what they need) added where it lacks them, and
    each one's name in it; (bwd, []) where a forward input they need is not a backward input."""
    found, fwd_ids = _in_backward(bwd, fwd)
    taken = {n.name for n in bwd.nodes}
    name_in_bwd, added, needed = {}, [], fwd.ancestors(staged)
    for n in fwd.nodes:
        if n.name not in needed:
            continue
        same = found.get(fwd_ids[n.name])
        if same is None and n.op is Op.INPUT:
            return bwd, []
        if same is None:
            same = n.name
            while same in taken:
                same = f"fwd_{same}"
            added.append(dataclasses.replace(n, name=same, inputs=tuple(name_in_bwd[i] for i in n.inputs)))
            found[fwd_ids[n.name]] = same
            taken.add(same)
        name_in_bwd[n.name] = same
    return bwd.replace(bwd.nodes + added), [name_in_bwd[s] for s in staged]


def reads_states(prep: Graph, states) -> bool:
    """Whether a prep kernel's graph reads one of the forward's states (so it must run after the scan)."""
    needed, roles = prep.ancestors(prep.outputs.values()), {s.name for s in states}
    return any(n.a["role"] in roles for n in prep.inputs if n.name in needed)


def same_in_backward(bwd: Graph, fwd: Graph, names: list[str]) -> list[str | None]:
    """Per forward node in `names` (computed, not inputs), the backward node that computes the same
    (the same expression over the same inputs), or None: the gradient kernels read those from the
    forward scan's run in the backward (partition.written_by_scan) instead of computing them again."""
    found, fwd_ids = _in_backward(bwd, fwd)
    return [found.get(fwd_ids[n]) for n in names]
