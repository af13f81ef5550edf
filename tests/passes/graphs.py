"""Helpers for the pass tests: build small tile-IR graphs with make_node and compare graphs
structurally (node names normalised away).

    b = GraphBuilder()
    x = b.input("x", (C, K))
    y = b.add(Op.MUL, x, b.const(1.0))
    g = b.build(o=y)

`same_values(before, after)` evaluates both graphs in float64 on the same random inputs (C, K, V
of sizes 4, 5, 3; broadcast dims of 1) and compares every output. `normalize(g)` renders a graph
with every non-input node renamed %0, %1, ... in order, so two graphs that differ only in node
names render the same; `expr(g, role)` renders the expression an
output computes as nested calls, e.g. "mm(b, a)".
"""
from __future__ import annotations

import itertools

import torch

from flexla.ir import C, K, V, Graph, Op, make_node, verify

SIZES = {C: 4, K: 5, V: 3}
EVAL = {Op.ADD: torch.add, Op.SUB: torch.sub, Op.NEG: torch.neg, Op.TRANSPOSE: lambda x: x.T,
        Op.MM: torch.mm, Op.EXP: torch.exp, Op.MUL: torch.mul}


class GraphBuilder:
    def __init__(self, name: str = "test"):
        self.nodes, self.shapes, self.name = [], {}, name
        self._ids = itertools.count()

    def add(self, op: Op, *inputs: str, name: str | None = None, loc: str | None = None, **attrs) -> str:
        name = name or f"{op.value}_{next(self._ids)}"
        node = make_node(name, op, inputs, attrs, self.shapes, loc)
        self.nodes.append(node)
        self.shapes[name] = node.shape
        return name

    def input(self, role: str, shape=()) -> str:
        return self.add(Op.INPUT, name=role, role=role, shape=tuple(shape))

    def const(self, value: float) -> str:
        return self.add(Op.CONST, value=float(value))

    def build(self, **outputs: str) -> Graph:
        return verify(Graph(list(self.nodes), dict(outputs), {"name": self.name}))


def _attr(v) -> str:
    if isinstance(v, tuple):
        return "(" + ", ".join(map(str, v)) + ")"
    return str(v)


def _line(n, names) -> str:
    args = [names[i] for i in n.inputs] + [f"{k}={_attr(v)}" for k, v in n.attrs]
    shape = "[" + ", ".join(map(str, n.shape)) + "]"
    return f"{names[n.name]} = {n.op.value}({', '.join(args)}) : {shape}{' i1' if n.dtype == 'i1' else ''}"


def normalize(graph: Graph) -> list[str]:
    """One line per node, names replaced by position (inputs keep their role), then the outputs."""
    names, lines, ids = {}, [], itertools.count()
    for n in graph.nodes:
        names[n.name] = n.a["role"] if n.op is Op.INPUT else f"%{next(ids)}"
        lines.append(_line(n, names))
    lines.append("return " + ", ".join(f"{k}={names[v]}" for k, v in sorted(graph.outputs.items())))
    return lines


def assert_same_graph(actual: Graph, expected: Graph) -> None:
    verify(actual)
    a, e = normalize(actual), normalize(expected)
    assert a == e, "graphs differ\n--- actual\n" + "\n".join(a) + "\n--- expected\n" + "\n".join(e)


def expr(graph: Graph, role_or_name: str) -> str:
    """The value of an output (or node) as a nested expression over input roles and constants."""
    name = graph.outputs.get(role_or_name, role_or_name)
    n = graph[name]
    if n.op is Op.INPUT:
        return n.a["role"]
    if n.op is Op.CONST:
        return repr(n.a["value"])
    args = [expr(graph, i) for i in n.inputs] + [f"{k}={_attr(v)}" for k, v in n.attrs]
    return f"{n.op.value}({', '.join(args)})"


def ops(graph: Graph) -> list[str]:
    """The ops of the non-input nodes, in order."""
    return [n.op.value for n in graph.nodes if n.op is not Op.INPUT]


def simple_gla_forward():
    """The forward graph of one chunk of a simple-GLA-like variant, built by hand:

        intra:  gc = cumsum(g); decay = exp(tril(gc[:, None] - gc[None, :]))
                o_intra = tril((q*scale) @ k.T * decay) @ v;  qg = q*scale * exp(gc)[:, None]
                kv = (k * exp(gc[-1] - gc)[:, None]).T @ v;   d = exp(gc[-1])
        update: S_next = S * d + kv
        merge:  o = o_intra + qg @ S

    Returns the graph and a dict of the interesting node names.
    """
    from flexla.ir import C, K, V

    b = GraphBuilder("simple_gla_forward")
    S, q, k, v = b.input("S", (K, V)), b.input("q", (C, K)), b.input("k", (C, K)), b.input("v", (C, V))
    scale, g = b.input("scale"), b.input("g", (C,))
    n = {}
    n["qs"] = b.add(Op.MUL, q, scale)
    n["gc"] = b.add(Op.CUMSUM, g, dim=0)
    diff = b.add(Op.SUB, b.add(Op.UNSQUEEZE, n["gc"], dim=1), b.add(Op.UNSQUEEZE, n["gc"], dim=0))
    n["decay"] = b.add(Op.EXP, b.add(Op.TRIL, diff, diagonal=0))
    n["qk"] = b.add(Op.MM, n["qs"], b.add(Op.TRANSPOSE, k))
    n["A"] = b.add(Op.TRIL, b.add(Op.MUL, n["qk"], n["decay"]), diagonal=0)
    n["o_intra"] = b.add(Op.MM, n["A"], v)
    n["qg"] = b.add(Op.MUL, n["qs"], b.add(Op.UNSQUEEZE, b.add(Op.EXP, n["gc"]), dim=1))
    n["glast"] = b.add(Op.SELECT, n["gc"], dim=0, index=-1)
    n["kdec"] = b.add(Op.EXP, b.add(Op.SUB, n["glast"], n["gc"]))
    n["kk"] = b.add(Op.MUL, k, b.add(Op.UNSQUEEZE, n["kdec"], dim=1))
    n["kv"] = b.add(Op.MM, b.add(Op.TRANSPOSE, n["kk"]), v)
    n["d"] = b.add(Op.EXP, n["glast"])
    n["S_decayed"] = b.add(Op.MUL, S, n["d"])
    n["S_next"] = b.add(Op.ADD, n["S_decayed"], n["kv"])
    n["inter"] = b.add(Op.MM, n["qg"], S)
    n["o"] = b.add(Op.ADD, n["o_intra"], n["inter"])
    return b.build(o=n["o"], S_next=n["S_next"]), n


def evaluate(graph: Graph, inputs: dict) -> dict:
    values = {}
    for n in graph.nodes:
        values[n.name] = inputs[n.a["role"]] if n.op is Op.INPUT else EVAL[n.op](*(values[i] for i in n.inputs))
    return {role: values[name] for role, name in graph.outputs.items()}


def same_values(before: Graph, after: Graph) -> bool:
    torch.manual_seed(0)
    inputs = {n.a["role"]: torch.randn([SIZES.get(d, 1) for d in n.shape], dtype=torch.float64)
              for n in before.inputs}        # a scalar input: a 0-d tensor
    a, b = evaluate(before, inputs), evaluate(after, inputs)
    return all(torch.allclose(a[r], b[r]) for r in a)
