"""Lowers IR nodes to lines of Triton, one expression per node.

A tile with symbolic shape [C, K] lives in a Triton block of shape [BC, BK]. Lanes beyond the
valid length (the tail of the last chunk, K or V that are not powers of two) may hold anything:
Values and accumulators have the dtype ACC (float32; float64 when the inputs are, for gradcheck).
every op that mixes lanes along a dim (contraction, reduction, select, reverse cumsum) first
zeroes the invalid lanes of that dim with `_keep`, which compiles to nothing when the dim is
known to be full (MASK_<dim> constexpr false).
"""
from __future__ import annotations

from ..ir import C, K, V, Graph, Node, Op
from ..ir.ops import GATED

DIM = {C: "C", K: "K", V: "V"}
RESERVED = {"T", "H", "K", "V", "NT", "BC", "BK", "BV", "ACC", "scale", "tl", "triton", "t", "n_valid", "row"}


def var(name: str) -> str:
    return f"x_{name}" if name in RESERVED or name.startswith(("i_", "m_", "o_", "next_", "first_")) else name


def dim_name(d) -> str | None:
    return DIM.get(d) if d != 1 else None


def block(shape) -> str:
    return "[" + ", ".join("1" if d == 1 else f"B{DIM[d]}" for d in shape) + "]"


def valid_length(d: str) -> str:
    """The number of valid lanes along a dim, to resolve negative indices."""
    return {"C": "n_valid", "K": "K", "V": "V"}[d]


def keep(x: str, shape, axis: int, fill="0.0") -> str:
    """x with the invalid lanes of `axis` replaced by fill (a no-op when that dim is full)."""
    d = dim_name(shape[axis])
    if d is None:
        return x
    if len(shape) == 1:
        return f"_keep1(x={x}, m=m_{d}, fill={fill}, ACTIVE=MASK_{d})"
    return f"_keep2(x={x}, m=m_{d}, axis={axis}, fill={fill}, ACTIVE=MASK_{d})"


def lane_index(d: str) -> str:
    return f"o_{d}" if d in ("K", "V") else f"i_{d}"


def _expand_to(expr: str, shape_from, shape_to) -> str:
    """Broadcast an expression to a block of shape_to (same rank or a scalar)."""
    if tuple(shape_from) == tuple(shape_to):
        return expr
    return f"({expr} + tl.zeros({block(shape_to)}, dtype=ACC))"


UNARY = {Op.NEG: "-({0})", Op.EXP: "tl.exp({0})", Op.LOG: "tl.log({0})", Op.SQRT: "tl.sqrt({0})",
         Op.RSQRT: "tl.rsqrt({0})", Op.ABS: "tl.abs({0})", Op.SIGMOID: "tl.sigmoid({0})"}
BINARY = {Op.ADD: "{0} + {1}", Op.SUB: "{0} - {1}", Op.MUL: "{0} * {1}", Op.DIV: "{0} / {1}",
          Op.GT: "{0} > {1}", Op.GE: "{0} >= {1}", Op.LT: "{0} < {1}", Op.LE: "{0} <= {1}",
          Op.EQ: "{0} == {1}", Op.AND: "{0} & {1}", Op.MAXIMUM: "tl.maximum({0}, {1})", Op.MINIMUM: "tl.minimum({0}, {1})"}


class Lowering:
    def __init__(self, graph: Graph):
        self.g = graph

    def ref(self, name: str) -> str:
        n = self.g[name]
        if n.op is Op.CONST:
            return repr(float(n.a["value"]))
        return var(name)

    def shape(self, name):
        return self.g[name].shape

    def line(self, n: Node) -> str | None:
        if n.op in (Op.INPUT, Op.CONST):
            return None
        return f"{var(n.name)} = {self.expr(n)}"

    def expr(self, n: Node) -> str:
        a = n.a
        args = [self.ref(i) for i in n.inputs]
        if n.op in UNARY:
            return UNARY[n.op].format(*args)
        if n.op is Op.POW:
            e = a["exponent"]
            if float(e).is_integer() and 0 < e <= 4:
                return " * ".join([f"({args[0]})"] * int(e))
            return f"tl.exp({e!r} * tl.log({args[0]}))"
        if n.op in BINARY:
            return "(" + BINARY[n.op].format(*args) + ")"
        if n.op is Op.WHERE:
            return f"tl.where({args[0]}, {args[1]}, {args[2]})"
        if n.op is Op.MM:
            return self.mm(n, *n.inputs)
        if n.op is Op.TRANSPOSE:
            return f"tl.trans({args[0]})"
        if n.op is Op.UNSQUEEZE:
            src = self.shape(n.inputs[0])
            if len(src) == 0:
                return _expand_to(args[0], (), n.shape)
            return f"{args[0]}[:, None]" if a["dim"] % 2 == 1 else f"{args[0]}[None, :]"
        if n.op is Op.SQUEEZE:
            return f"tl.sum({args[0]}, axis={a['dim'] % len(self.shape(n.inputs[0]))})"
        if n.op is Op.EXPAND:
            return _expand_to(args[0], self.shape(n.inputs[0]), n.shape)
        if n.op in (Op.SUM, Op.MAX):
            return self.reduce(n, args[0])
        if n.op is Op.CUMSUM:
            return f"tl.cumsum({args[0]}, axis={a['dim']})"
        if n.op is Op.REVCUMSUM:
            x = keep(args[0], self.shape(n.inputs[0]), a["dim"])
            return f"tl.cumsum({x}, axis={a['dim']}, reverse=True)"
        if n.op in (Op.TRIL, Op.TRIU):
            r, c = (lane_index(dim_name(d)) for d in n.shape)
            cmp = ">=" if n.op is Op.TRIL else "<="
            return f"tl.where({r}[:, None] + {a['diagonal']} {cmp} {c}[None, :], {args[0]}, 0.0)"
        if n.op is Op.SELECT:
            src = self.shape(n.inputs[0])
            d, ax = dim_name(src[a["dim"]]), a["dim"]
            idx = a["index"] if a["index"] >= 0 else f"({valid_length(d)} - {-a['index']})"
            hit = f"({lane_index(d)} == {idx})"
            if len(src) == 2:
                hit = f"{hit}[:, None]" if ax == 0 else f"{hit}[None, :]"
            return f"tl.sum(tl.where({hit}, {args[0]}, 0.0), axis={ax})"
        if n.op is Op.PLACE:
            d, ax = dim_name(n.shape[a["dim"]]), a["dim"]
            idx = a["index"] if a["index"] >= 0 else f"({valid_length(d)} - {-a['index']})"
            hit = f"({lane_index(d)} == {idx})"
            x = args[0]
            if len(n.shape) == 2:
                hit, x = (f"{hit}[:, None]", f"{x}[None, :]") if ax == 0 else (f"{hit}[None, :]", f"{x}[:, None]")
            return f"tl.where({hit}, {x}, 0.0)"
        if n.op is Op.TRIINV:   # the helper inverts lower matrices; (U^-1)^T = (U^T)^-1
            d = dim_name(n.shape[0])
            A = f"tl.trans({args[0]})" if a["upper"] else args[0]
            inv = f"_tri_inverse({A}, {lane_index(d)}, {valid_length(d)}, UNIT={a['unit']}, DOT_PRECISION=DOT_PRECISION)"
            return f"tl.trans({inv})" if a["upper"] else inv
        if n.op in GATED:
            d = dim_name(n.shape[0])
            first = args[0] if n.op is not Op.GATED_SCORES else keep(args[0], self.shape(n.inputs[0]), 1)
            second = keep(args[1], self.shape(n.inputs[1]), 1) if n.op is Op.GATED_SCORES else args[1]
            return (f"_{n.op.value}({first}, {second}, {args[2]}, {lane_index(d)}, {valid_length(d)}, gate_flag, "
                    f"GATES=GATES, DOT_PRECISION=DOT_PRECISION, EXP_DTYPE=EXP_DTYPE)")
        if n.op is Op.FULL:
            if not n.shape:
                return repr(float(a["value"]))
            return f"tl.full({block(n.shape)}, {float(a['value'])!r}, ACC)"
        if n.op is Op.EYE:
            i = lane_index(dim_name(n.shape[0]))
            return f"tl.where({i}[:, None] == {i}[None, :], 1.0, 0.0)"
        if n.op is Op.ARANGE:
            return f"{lane_index(dim_name(n.shape[0]))}.to(ACC)"
        raise NotImplementedError(f"no Triton lowering for {n.op}")

    def reduce(self, n: Node, x: str) -> str:
        src = self.shape(n.inputs[0])
        fill, fn = ("0.0", "tl.sum") if n.op is Op.SUM else ("float('-inf')", "tl.max")
        for ax in n.a["dims"]:
            x = keep(x, src, ax, fill)
        for ax in sorted(n.a["dims"], reverse=True):
            x = f"{fn}({x}, axis={ax})"
        if n.a["keepdim"] and len(src) == 2 and len(n.a["dims"]) == 1:
            x = f"{x}[None, :]" if n.a["dims"][0] == 0 else f"{x}[:, None]"
        elif n.a["keepdim"]:
            x = _expand_to(x, (), n.shape)
        return x

    def mm(self, n: Node, a_name: str, b_name: str) -> str:
        (m, k), (_, nn) = self.shape(a_name), self.shape(b_name)
        a, b = keep(self.ref(a_name), (m, k), 1), keep(self.ref(b_name), (k, nn), 0)   # for the vector cases
        if k == 1:
            return f"({a} * {b})"
        if m == 1:
            return f"tl.sum(tl.trans({a}) * {b}, axis=0)[None, :]"
        if nn == 1:
            return f"tl.sum({a} * tl.trans({b}), axis=1)[:, None]"
        dt = {"input": "DOT_DTYPE", "range": "EXP_DTYPE"}.get(n.a.get("operand_dtype", "input"), "ACC")
        return f"tl.dot({self.operand(a_name, 1, dt)}, {self.operand(b_name, 0, dt)}, input_precision=DOT_PRECISION, out_dtype=ACC)"

    def operand(self, name: str, axis: int, dt: str) -> str:
        """A product's operand, its contracted `axis` masked, cast to the operand dtype. A transposed
        operand is cast before the transposition: the cast then meets the load's widening and Triton
        drops both, so the tile goes from memory to shared memory by an asynchronous, pipelined copy
        and is transposed there (cast after, a scan's k^T was loaded synchronously every step)."""
        n = self.g[name]
        if n.op is Op.TRANSPOSE and len(self.shape(n.inputs[0])) == 2:
            src = n.inputs[0]
            return f"tl.trans(({keep(self.ref(src), self.shape(src), 1 - axis)}).to({dt}))"
        return f"({keep(self.ref(name), self.shape(name), axis)}).to({dt})"


def is_dot(graph: Graph, n: Node) -> bool:
    """A product that lowers to tl.dot (not one of the vector cases of Lowering.mm)."""
    return n.op is Op.MM and 1 not in (*graph[n.inputs[0]].shape, graph[n.inputs[1]].shape[1])


def lines(graph: Graph, names: list[str]) -> list[str]:
    """The kernel lines of the named nodes (see named_lines)."""
    return [line for _, line, _ in named_lines(graph, names)]


def named_lines(graph: Graph, names: list[str]) -> list[tuple[str, str, set[str]]]:
    """(node, kernel line, the values the line reads) of the named nodes. A transposition that only
    products read is left out: each product transposes its cast operand itself (Lowering.operand),
    so its readers read what it reads."""
    low = Lowering(graph)
    readers: dict[str, list[Node]] = {}
    for n in graph.nodes:
        for i in n.inputs:
            readers.setdefault(i, []).append(n)
    kept = set(graph.outputs.values())
    left_out: dict[str, set[str]] = {}
    out = []
    for name in names:
        n = graph[name]
        reads = set().union(*(left_out.get(i, {i}) for i in n.inputs))
        if (n.op is Op.TRANSPOSE and name not in kept and len(n.shape) == 2
                and all(is_dot(graph, r) for r in readers.get(name, []))):
            left_out[name] = reads
            continue
        ln = low.line(n)
        if ln:
            out.append((name, ln, reads))
    return out
