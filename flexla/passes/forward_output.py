"""The backward reads the forward's output where it would recompute it.

The vjp of a step whose output is normalised needs that output again (mLSTM divides by
max(|q n|, 1) + eps, so d den = -sum_v do o / den^2 ...). Recomputed, it costs the chunk's output
products (A v and q S) in every gradient kernel, where the forward has written o already. A
backward node that computes the same expression as the forward's output becomes an input `o`,
read back like `do` (in the input dtype: bf16 o for bf16 inputs, as FLA's backward of softmax
attention reads its output). `META["bwd_reads_o"]` tells the autograd function to keep o.
"""
from __future__ import annotations

import dataclasses

from ..ir import Graph, Op
from ..ir.graph import make_node
from .dce import dead_code
from .tiling import tile

OUTPUT = "o"


def expressions(graph: Graph, table: dict) -> dict[str, int]:
    """Every node's expression over the input roles, as an id shared by equal expressions."""
    ids = {}
    for n in graph.nodes:
        key = ("input", n.a["role"]) if n.op is Op.INPUT else (n.op, n.attrs, tuple(ids[i] for i in n.inputs))
        ids[n.name] = table.setdefault(key, len(table))
    return ids


def read_forward_output(bwd: Graph, fwd: Graph) -> Graph:
    table = {}
    target = expressions(fwd, table)[fwd.outputs[OUTPUT]]
    ids = expressions(bwd, table)
    same = {n.name for n in bwd.nodes if ids[n.name] == target and n.op is not Op.INPUT}
    if not same or OUTPUT in bwd:
        return bwd
    shapes = {n.name: n.shape for n in bwd.nodes}
    o = make_node(OUTPUT, Op.INPUT, (), {"role": OUTPUT, "shape": fwd[fwd.outputs[OUTPUT]].shape}, shapes)
    nodes = []
    for n in bwd.nodes:
        if n.name in same:
            continue
        nodes.append(dataclasses.replace(n, inputs=tuple(OUTPUT if i in same else i for i in n.inputs)))
        if n.op is Op.INPUT and n.a["role"] == "do":     # o sits with the other inputs, after do
            nodes.append(o)
    outputs = {r: OUTPUT if v in same else v for r, v in bwd.outputs.items()}
    return tile(dead_code(bwd.replace(nodes, outputs)))
