"""Precision assignment. Every value and accumulator is fp32; the operands of a matrix product
are cast to the input dtype (bf16/fp16 tensor cores on the GPU), as FLA does, with two
exceptions:
- an operand that carries a cumulative sum of log-gates stays fp32 (tf32 on the GPU): its
  absolute size makes bf16 lose the small differences the kernel later exponentiates;
- an operand that carries a triangular inverse, whose entries can be large, takes the dtype with
  fp32's range (`"range"`: the kernels' EXP_DTYPE, bf16 for bf16 inputs, else fp32; fp16 could
  overflow), as FLA applies its inverses in bf16. In fp32 (tf32) the products by the inverse took
  most of the delta rules' prep kernel at chunk 64 (run 119: 320 -> 182 us at (8, 2048, 16, 128)).
"""
from __future__ import annotations

import dataclasses

from ..ir import Graph, Op

KEEP_FP32 = {Op.CUMSUM, Op.REVCUMSUM}
KEEP_RANGE = {Op.TRIINV}
# arithmetic that keeps a value's magnitude (no exp): what it makes from a sensitive value is too
PASSES_ON = {Op.ADD, Op.SUB, Op.NEG, Op.UNSQUEEZE, Op.SQUEEZE, Op.EXPAND, Op.TRANSPOSE, Op.SELECT}


def assign_precision(graph: Graph) -> Graph:
    fp32, wide = _derived(graph, KEEP_FP32), _derived(graph, KEEP_RANGE)
    nodes = []
    for n in graph.nodes:
        if n.op is Op.MM:
            dtype = ("fp32" if any(i in fp32 for i in n.inputs) else
                     "range" if any(i in wide for i in n.inputs) else "input")
            n = dataclasses.replace(n, attrs=tuple(sorted({**n.a, "operand_dtype": dtype}.items())))
        nodes.append(n)
    return graph.replace(nodes)


def _derived(graph: Graph, sources: set) -> set:
    """The values made by `sources` ops, or from them by arithmetic that keeps their magnitude."""
    out = set()
    for n in graph.nodes:
        if n.op in sources or (n.op in PASSES_ON and any(i in out for i in n.inputs)):
            out.add(n.name)
    return out


def read_as_dot_operand(graph: Graph, name: str) -> bool:
    """Whether every use of `name` is as a matrix-product operand cast to the input dtype (directly
    or through transposes). A value read only that way may be stored in the input dtype between
    kernels: the cast happens either way, so nothing the kernel would have kept is lost."""
    if name in graph.outputs.values():
        return False
    users = [n for n in graph.nodes if name in n.inputs]
    return all((u.op is Op.MM and u.a.get("operand_dtype") == "input")
               or (u.op is Op.TRANSPOSE and read_as_dot_operand(graph, u.name)) for u in users)
