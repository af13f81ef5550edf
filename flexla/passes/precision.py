"""Precision assignment. Every value and accumulator is fp32; the operands of a matrix product
are cast to the input dtype (bf16/fp16 tensor cores on the GPU), as FLA does, except where an
operand carries a cumulative sum of log-gates, whose absolute size makes bf16 lose the small
differences the kernel later exponentiates, and where an operand is a triangular inverse, whose
entries can be large and cancel: those products stay fp32 (tf32 on the GPU).
"""
from __future__ import annotations

import dataclasses

from ..ir import Graph, Op

KEEP_FP32 = {Op.CUMSUM, Op.REVCUMSUM, Op.TRIINV}


def assign_precision(graph: Graph) -> Graph:
    # values derived from a cumsum or an inverse by arithmetic that keeps its magnitude (no exp)
    sensitive = set()
    for n in graph.nodes:
        if n.op in KEEP_FP32 or (n.op in (Op.ADD, Op.SUB, Op.NEG, Op.UNSQUEEZE, Op.SQUEEZE, Op.EXPAND,
                                               Op.TRANSPOSE, Op.SELECT)
                                      and any(i in sensitive for i in n.inputs)):
            sensitive.add(n.name)
    nodes = []
    for n in graph.nodes:
        if n.op is Op.MM:
            dtype = "fp32" if any(i in sensitive for i in n.inputs) else "input"
            n = dataclasses.replace(n, attrs=tuple(sorted({**n.a, "operand_dtype": dtype}.items())))
        nodes.append(n)
    return graph.replace(nodes)


def read_as_dot_operand(graph: Graph, name: str) -> bool:
    """Whether every use of `name` is as a matrix-product operand cast to the input dtype (directly
    or through transposes). A value read only that way may be stored in the input dtype between
    kernels: the cast happens either way, so nothing the kernel would have kept is lost."""
    if name in graph.outputs.values():
        return False
    users = [n for n in graph.nodes if name in n.inputs]
    return all((u.op is Op.MM and u.a.get("operand_dtype") == "input")
               or (u.op is Op.TRANSPOSE and read_as_dot_operand(graph, u.name)) for u in users)
