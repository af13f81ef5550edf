"""Scalings move off a product's operand that is otherwise a plain input, so the kernel can stream
that input to the tensor cores as it is loaded.

A product operand scaled in registers (`q * scale`, the gated delta rule's `k * exp(g_C - g)[:, None]`)
is loaded, widened, multiplied, narrowed and written back to shared memory before every product;
in a scan that happens every step, on its critical path. The same scaling applied elsewhere:

- a scalar, or a scaling of the product's rows (of `a` in `a b`) or columns (of `b`), applies to
  the product's result: (r a) b = r (a b), a (b c) = (a b) c;
- a scaling of the contracted dimension moves to the other operand, where that one is computed
  anyway (not an input): (a r) b = a (r b); or where both are inputs, from a transposed one to one
  that is not (simple GLA's state update (k * e[:, None])^T v -> k^T (v * e[:, None]), as FLA's
  state kernel scales v): a scaled operand is written from registers to shared memory before the
  product either way, and the transposed one took a transpose in registers on top. Otherwise,
  both inputs: left as it is.

An operand moves only where every scaling on it can, and it is then an input (or its transpose).
The result is the same up to rounding: the scaling is applied in fp32 to a product of unscaled
operands, where before the scaled operand was rounded to the product's operand dtype.

H200, bf16 (docs/performance.md, runs 152-155): the gated delta rule's forward 8-23% faster, its
D = 256 forward + backward 19%, simple GLA's D = 256 forward 20%; the delta rules and KDA unchanged.
The move between inputs (run 182): simple GLA's scan 204 -> 174 registers on sm_90 (no spills at
chunk 128, 224 bytes before), its forward within 3% on the H200.
"""
from __future__ import annotations

import dataclasses
import itertools

from ..ir import Graph, Op
from ..ir.graph import make_node


@dataclasses.dataclass
class Peeled:
    """An operand as base (an input, transposed if `flipped`) times scalings, each (factor node,
    what it scales of the operand, what it scales of the product it was in): "scalar", "rows" or
    "cols". The two differ where a transpose lies between."""
    base: str
    flipped: bool
    factors: list


def move_scalings(graph: Graph) -> Graph:
    nodes, shapes, index = [], {}, {}
    fresh = itertools.count()

    def emit(op, inputs, attrs=None, name=None, loc=None):
        node = make_node(name or f"scaled_{next(fresh)}", op, inputs, attrs or {}, shapes, loc)
        nodes.append(node)
        shapes[node.name] = node.shape
        index[node.name] = node
        return node.name

    for n in graph.nodes:
        if not (n.op is Op.MM and _moved(index, n, emit)):     # a moved product keeps its name
            nodes.append(n)
            shapes[n.name] = n.shape
            index[n.name] = n
    return graph.replace(nodes, dict(graph.outputs))


def _moved(index, n, emit) -> bool:
    """Emits mm(a, b) with its scalings moved, under n's name; False where nothing moves."""
    a, b = (_peel(index, i) for i in n.inputs)
    is_input = lambda p: p is not None        # _peel found an input under the scalings
    contracted = {0: "cols", 1: "rows"}       # of a [M, R] and b [R, N]: R
    output_side = {0: "rows", 1: "cols"}      # M and N

    def movable(p, side, other):
        """Every scaling on p can go: the factor node is reused as it is, so its own orientation
        (raw) must already be the one it needs where it goes."""
        if not is_input(p) or not p.factors:
            return False
        for _, kind, raw in p.factors:
            to_output = kind == "scalar" or (kind == output_side[side] and raw == kind)
            # onto a computed operand, or from a transposed input onto an input as it lies: the
            # scaled operand then goes to shared memory without a transpose in registers
            to_other = kind == contracted[side] and raw != kind and (
                not is_input(other) or (p.flipped and not other.flipped and not other.factors))
            if not (to_output or to_other):
                return False
        return True

    moves = [movable(a, 0, b), movable(b, 1, a)]
    if not any(moves):
        return False
    operands, after = list(n.inputs), []
    for side, (p, move) in enumerate(zip((a, b), moves)):
        if move:
            operands[side] = emit(Op.TRANSPOSE, (p.base,), loc=n.loc) if p.flipped else p.base
    for side, (p, move) in enumerate(zip((a, b), moves)):
        if not move:
            continue
        for factor, kind, _ in p.factors:
            if kind == contracted[side]:          # onto the other operand, in its orientation
                operands[1 - side] = emit(Op.MUL, (operands[1 - side], factor), loc=n.loc)
            else:
                after.append(factor)
    out = emit(Op.MM, operands, n.a, name=None if after else n.name, loc=n.loc)
    for i, factor in enumerate(after):
        out = emit(Op.MUL, (out, factor), name=n.name if i == len(after) - 1 else None, loc=n.loc)
    return True


def _peel(index, name) -> Peeled | None:
    """name as an input (maybe transposed) times scalings; None where it is something else."""
    flipped, factors = False, []
    while True:
        node = index[name]
        if node.op is Op.TRANSPOSE:
            flipped, name = not flipped, node.inputs[0]
            continue
        scaling = _scaling(index, node) if node.op is Op.MUL else None
        if scaling is None:
            break
        x, factor, raw = scaling
        kind = {"rows": "cols", "cols": "rows"}[raw] if flipped and raw != "scalar" else raw
        factors.append((factor, kind, raw))
        name = x
    return Peeled(name, flipped, factors) if index[name].op is Op.INPUT else None


def _scaling(index, node):
    """(x, factor, "scalar" | "rows" | "cols") where node = x * factor scales x's rows ([P, 1]) or
    columns ([1, Q]) or all of x (a scalar); None otherwise."""
    if len(node.shape) != 2:
        return None
    for x, factor in (node.inputs, node.inputs[::-1]):
        fs = index[factor].shape
        if tuple(index[x].shape) != tuple(node.shape) or x == factor:
            continue
        if fs == ():
            return x, factor, "scalar"
        if len(fs) == 2 and fs[1] == 1 and fs[0] == node.shape[0] and fs[0] != 1:
            return x, factor, "rows"
        if len(fs) == 2 and fs[0] == 1 and fs[1] == node.shape[1] and fs[1] != 1:
            return x, factor, "cols"
    return None
