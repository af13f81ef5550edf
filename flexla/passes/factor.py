"""Sums of products that share an operand become one product: A B + A C -> A (B + C).

The vjp differentiates every use of a value on its own and sums the pieces afterwards. Where the
value was a sum itself, or a product's operand used twice, that leaves sums of products with one
operand in common: the delta rule's state gradient has  -w^T a - w^T b  and its dk has
-(S a^T)^T - (S b^T)^T, where a + b already exists as the gradient of v's update. One product
instead of two halves that tensor-core work, and in a kernel that sums over V slices it is one
accumulator fewer.

A sum is read as signed terms, through add, sub, neg and transpose nodes that only it uses. A term
that is a product is put in the orientation of the sum (T(A B) = T(B) T(A)) with the signs of its
operands taken out ((-A) B = -(A B)); products with the same left or the same right operand and
attributes then merge, their other operands summed the same way. Sums are built in graph order with
negations outside, so a sum that already exists (the a + b above) is found again by CSE, which runs
next. Sums where nothing merges are left as they are.
"""
from __future__ import annotations

import dataclasses
import itertools
from collections import Counter

from ..ir import Graph, Op
from ..ir.graph import make_node

ADDITIVE = {Op.ADD, Op.SUB, Op.NEG, Op.TRANSPOSE}


@dataclasses.dataclass
class Term:
    sign: int
    name: str
    transposed: bool = False


def factor_products(graph: Graph) -> Graph:
    users = {n.name: [] for n in graph.nodes}
    for n in graph.nodes:
        for i in set(n.inputs):
            users[i].append(n)
    outputs = Counter(graph.outputs.values())
    absorbed = {n.name for n in graph.nodes if _expandable(graph, n) and len(users[n.name]) == 1 and
                not outputs[n.name] and users[n.name][0].inputs.count(n.name) == 1}

    def read_through(name):
        """Whether a larger sum reads through this node (its one user is part of that sum)."""
        if name not in absorbed:
            return False
        user = users[name][0]
        return _expandable(graph, user) and (user.op in (Op.ADD, Op.SUB) or read_through(user.name))

    roots = {n.name for n in graph.nodes if n.op in (Op.ADD, Op.SUB) and not read_through(n.name)}
    order = {n.name: i for i, n in enumerate(graph.nodes)}
    nodes, mapping, shapes, made, transposes = [], {}, {}, {}, {}
    fresh = itertools.count()

    def emit(op, inputs, attrs=None, name=None, loc=None):
        inputs = tuple(mapping.get(i, i) for i in inputs)
        node = make_node(name or f"factor_{next(fresh)}", op, inputs, attrs or {}, shapes, loc)
        nodes.append(node)
        shapes[node.name] = node.shape
        made[node.name] = node
        order.setdefault(node.name, len(order))
        return node.name

    node = lambda name: made.get(name) or graph[name]      # this pass's nodes, then the graph's

    def transposed(name):       # one transpose per value, so that products sharing it can merge
        src = node(name)
        if src.op is Op.TRANSPOSE:
            return src.inputs[0]
        if name not in transposes:
            transposes[name] = emit(Op.TRANSPOSE, (name,))
        return transposes[name]

    def unsigned(name):
        """(sign, x) with name = sign * x: negations, also under a transpose, come out."""
        n = node(name)
        if n.op is Op.NEG:
            s, x = unsigned(n.inputs[0])
            return -s, x
        if n.op is Op.TRANSPOSE and node(n.inputs[0]).op is Op.NEG:
            s, x = unsigned(node(n.inputs[0]).inputs[0])
            return -s, transposed(x)
        return 1, name

    def combine(terms, loc):
        """(sign, node) with node the sum of the signed names, in graph order, positive first."""
        terms = sorted(terms, key=lambda t: order[t[1]])
        if all(s < 0 for s, _ in terms):
            return -1, combine([(-s, x) for s, x in terms], loc)[1]
        terms.sort(key=lambda t: t[0] < 0)      # stable: a positive term leads
        acc = terms[0][1]
        for s, x in terms[1:]:
            acc = emit(Op.ADD if s > 0 else Op.SUB, (acc, x), loc=loc)
        return 1, acc

    for n in graph.nodes:
        n = dataclasses.replace(n, inputs=tuple(mapping.get(i, i) for i in n.inputs))
        if n.name in roots:
            terms = _terms(graph, n.name, 1, False, absorbed, top=True)
            merged = _factor(graph, terms, users, outputs, unsigned, transposed, combine, emit, n.loc)
            if merged is not None:
                sign, value = merged
                if sign > 0:
                    mapping[n.name] = value
                else:
                    emit(Op.NEG, (value,), name=n.name, loc=n.loc)
                continue
        nodes.append(n)
        shapes[n.name] = n.shape
    return graph.replace(nodes, {k: mapping.get(v, v) for k, v in graph.outputs.items()})


def _expandable(graph: Graph, n) -> bool:
    """Whether a sum may read through n: +, -, negation, transpose, without broadcasting."""
    return n.op in ADDITIVE and (n.op is Op.TRANSPOSE or all(graph[i].shape == n.shape for i in n.inputs))


def _terms(graph, name, sign, trans, absorbed, top=False) -> list[Term]:
    n = graph[name]
    if (top or name in absorbed) and _expandable(graph, n):
        if n.op is Op.NEG:
            return _terms(graph, n.inputs[0], -sign, trans, absorbed)
        if n.op is Op.TRANSPOSE:
            return _terms(graph, n.inputs[0], sign, not trans, absorbed)
        second = -sign if n.op is Op.SUB else sign
        return _terms(graph, n.inputs[0], sign, trans, absorbed) + _terms(graph, n.inputs[1], second, trans, absorbed)
    return [Term(sign, name, trans)]


def _factor(graph, terms, users, outputs, unsigned, transposed, combine, emit, loc):
    """The terms' sum with products sharing an operand merged, as (sign, node); None if none merge."""
    products = []       # (sign, left, right, attrs) in the sum's orientation
    rest = []
    for t in terms:
        n = graph[t.name]
        if n.op is Op.MM and len(users[t.name]) + outputs[t.name] == 1:   # else it is needed anyway
            left, right = n.inputs
            if t.transposed:
                left, right = transposed(right), transposed(left)
            sl, left = unsigned(left)
            sr, right = unsigned(right)
            products.append([t.sign * sl * sr, left, right, n.attrs])
        else:
            rest.append(t)
    groups = []
    for side in (1, 2):      # merge on the left operand first, then on the right
        keyed = {}
        for p in products:
            keyed.setdefault((p[side], p[3]), []).append(p)
        for group in keyed.values():
            if len(group) > 1:
                groups.append((side, group))
                products = [p for p in products if all(p is not q for q in group)]
    if not groups:
        return None
    summed = []
    for side, group in groups:
        other = 3 - side
        s, operand = combine([(p[0], p[other]) for p in group], loc)
        pair = (group[0][1], operand) if side == 1 else (operand, group[0][2])
        summed.append((s, emit(Op.MM, pair, dict(group[0][3]), loc=loc)))
    for s, left, right, attrs in products:
        summed.append((s, emit(Op.MM, (left, right), dict(attrs), loc=loc)))
    for t in rest:
        summed.append((t.sign, transposed(t.name) if t.transposed else t.name))
    return combine(summed, loc)
