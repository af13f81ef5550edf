"""The IR's graph: an ordered list of frozen nodes (always in a valid topological order)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable

import networkx as nx

from .ops import COMPARISONS, Op, Shape, infer_shape


@dataclass(frozen=True)
class Node:
    name: str
    op: Op
    inputs: tuple[str, ...] = ()
    attrs: tuple[tuple[str, Any], ...] = ()
    shape: Shape = ()
    dtype: str = "f32"                       # "f32" or "i1" (comparisons)
    loc: str | None = field(default=None, compare=False)   # "intra:12" where the user wrote it

    @property
    def a(self) -> dict:
        return dict(self.attrs)

    def key(self) -> tuple:
        """What makes two nodes compute the same value (used by CSE)."""
        return (self.op, self.inputs, self.attrs)


def make_node(name: str, op: Op, inputs: Iterable[str], attrs: dict, shapes: dict, loc=None) -> Node:
    """A node with its shape inferred from the shapes of its inputs."""
    inputs = tuple(inputs)
    attrs_t = tuple(sorted((k, _freeze(v)) for k, v in attrs.items()))
    shape = infer_shape(op, [shapes[i] for i in inputs], attrs)
    dtype = "i1" if op in COMPARISONS else "f32"
    return Node(name, op, inputs, attrs_t, tuple(shape), dtype, loc)


def _freeze(v):
    return tuple(v) if isinstance(v, list) else v


@dataclass
class Graph:
    nodes: list[Node]
    outputs: dict[str, str]                  # output role -> node name
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self._index = {n.name: n for n in self.nodes}

    def __getitem__(self, name: str) -> Node:
        return self._index[name]

    def __contains__(self, name: str) -> bool:
        return name in self._index

    @property
    def inputs(self) -> list[Node]:
        return [n for n in self.nodes if n.op is Op.INPUT]

    def input(self, role: str) -> Node | None:
        return next((n for n in self.inputs if n.a["role"] == role), None)

    def to_networkx(self) -> nx.DiGraph:
        g = nx.DiGraph()
        for n in self.nodes:
            g.add_node(n.name)
            g.add_edges_from((i, n.name) for i in n.inputs)
        return g

    def ancestors(self, names: Iterable[str]) -> set[str]:
        """The given nodes and everything they depend on."""
        return self._closure(names, nx.ancestors)

    def descendants(self, names: Iterable[str]) -> set[str]:
        """The given nodes and everything that depends on them."""
        return self._closure(names, nx.descendants)

    def _closure(self, names, step) -> set[str]:
        g = self.to_networkx()
        return set().union(*({n} | step(g, n) for n in names))

    def replace(self, nodes: list[Node] | None = None, outputs: dict | None = None, **meta) -> "Graph":
        return Graph(list(self.nodes if nodes is None else nodes),
                     dict(self.outputs if outputs is None else outputs), {**self.meta, **meta})

    def subgraph(self, outputs: dict[str, str]) -> "Graph":
        """Only what the given outputs need (inputs kept), in the same order."""
        keep = self.ancestors(outputs.values())
        return self.replace([n for n in self.nodes if n.name in keep or n.op is Op.INPUT], outputs)

    def __str__(self) -> str:
        from .printer import render
        return render(self)
