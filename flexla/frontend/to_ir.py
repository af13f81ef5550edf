"""Turns a traced aten graph into the tile IR: one small handler per supported aten op."""
from __future__ import annotations

import itertools
import numbers

import sympy
import torch
import torch.fx

from ..ir import C, K, V, Graph, Op, make_node
from ..ir.ops import ShapeError
from . import primitives  # noqa: F401  (registers the flexla:: custom ops)
from .errors import CallbackError
from .locations import callback_of
from .trace import TRACE_SIZES

aten, prims = torch.ops.aten, torch.ops.prims


class Builder:
    def __init__(self, sizes: dict):
        self.nodes, self.shapes, self.loc = [], {}, None
        self.symbols = {sizes["C"]: C, sizes["K"]: K, sizes["V"]: V}
        self._ids = itertools.count()

    def add(self, op: Op, inputs=(), name: str | None = None, **attrs) -> str:
        name = name or f"{op.value}_{next(self._ids)}"
        try:
            node = make_node(name, op, inputs, attrs, self.shapes, self.loc)
        except ShapeError as e:
            raise self.error(f"{op.value} does not fit: {e}", "tiles have at most two dimensions; "
                             "check the shapes on this line") from None
        if len(node.shape) > 2:
            raise self.error(f"a {len(node.shape)}-D tile {list(node.shape)}",
                             "flexla's tiles have at most two dimensions: write the product with @ or "
                             "reduce one dim first")
        self.nodes.append(node)
        self.shapes[name] = node.shape
        return name

    def operand(self, x) -> str:
        if isinstance(x, torch.fx.Node):
            return self.env[x]
        if isinstance(x, (numbers.Number, bool)):
            return self.add(Op.CONST, value=float(x))
        raise self.error(f"unsupported operand {x!r}", "pass tensors or python numbers")

    def size(self, n) -> sympy.Expr:
        if n == 1:
            return sympy.Integer(1)
        if n in self.symbols:
            return self.symbols[n]
        raise self.error(f"a tile size {n} that is neither 1 nor one of C, K, V",
                         "use sizes taken straight from q.shape / v.shape (no arithmetic on them) or 1")

    def error(self, problem: str, hint: str) -> CallbackError:
        where = self.loc.split(", ", 1)[1] if self.loc and ", " in self.loc else None
        return CallbackError(callback_of(self.loc), where, problem, hint)


def _binary(op):
    return lambda b, x, y, *_, **kw: b.add(op, (b.operand(x), b.operand(y)))


def _unary(op):
    return lambda b, x, *_, **kw: b.add(op, (b.operand(x),))


def _add(op):
    def h(b, x, y, alpha=1, **kw):
        y = b.operand(y) if alpha == 1 else b.add(Op.MUL, (b.operand(y), b.operand(alpha)))
        return b.add(op, (b.operand(x), y))
    return h


def _identity(b, x, *args, **kw):
    return b.operand(x)


def _transpose(b, x, *dims, **kw):
    """t(x), transpose(x, 0, 1) and permute(x, [1, 0]) all swap the two dims of a matrix tile."""
    rank = len(b.shapes[b.operand(x)])
    same = dims and isinstance(dims[0], (list, tuple)) and list(dims[0]) == list(range(rank))
    if rank < 2 or same or (len(dims) == 2 and dims[0] % rank == dims[1] % rank):
        return b.operand(x)
    return b.add(Op.TRANSPOSE, (b.operand(x),))


def _reshape(b, x, shape, **kw):
    """view/reshape: only adding or removing size-1 dims is a tile operation."""
    name = b.operand(x)
    src = b.shapes[name]
    dst = tuple(b.size(s) if s != -1 else None for s in shape)
    if [s for s in src if s != 1] != [s for s in dst if s != 1 and s is not None] or None in dst:
        raise b.error(f"reshape of a {list(src)} tile to {list(shape)}",
                      "only adding or removing size-1 dims is supported; keep tiles at most 2-D")
    while tuple(b.shapes[name]) != dst:
        cur = b.shapes[name]
        i = next((i for i in range(min(len(cur), len(dst))) if cur[i] != dst[i]), min(len(cur), len(dst)))
        if len(cur) > len(dst):
            name = b.add(Op.SQUEEZE, (name,), dim=i)
        else:
            name = b.add(Op.UNSQUEEZE, (name,), dim=i)
    return name


def _squeeze(b, x, dims=None, **kw):
    name = b.operand(x)
    shape = b.shapes[name]
    dims = range(len(shape)) if dims is None else ([dims] if isinstance(dims, int) else dims)
    for d in sorted((d % len(shape) for d in dims if shape[d % len(shape)] == 1), reverse=True):
        name = b.add(Op.SQUEEZE, (name,), dim=d)
    return name


def _sum(b, x, dims=None, keepdim=False, **kw):
    name = b.operand(x)
    rank = len(b.shapes[name])
    if rank == 0:
        return name
    dims = list(range(rank)) if not dims else [d % rank for d in dims]
    return b.add(Op.SUM, (name,), dims=tuple(dims), keepdim=bool(keepdim))


def _amax(b, x, dims=(), keepdim=False, **kw):
    name = b.operand(x)
    rank = len(b.shapes[name])
    dims = list(range(rank)) if not dims else [d % rank for d in dims]
    return b.add(Op.MAX, (name,), dims=tuple(dims), keepdim=bool(keepdim))


def _full(value):
    def h(b, size, *args, **kw):
        return b.add(Op.FULL, value=float(value), shape=tuple(b.size(s) for s in size))
    return h


def _full_like(value=None):
    def h(b, x, *args, **kw):
        v = args[0] if value is None else value
        return b.add(Op.FULL, value=float(v), shape=b.shapes[b.operand(x)])
    return h


def _new_full(value=None):
    def h(b, x, size, *args, **kw):
        v = args[0] if value is None else value
        return b.add(Op.FULL, value=float(v), shape=tuple(b.size(s) for s in size))
    return h


def _expand(b, x, shape, *a, **kw):
    name = b.operand(x)
    src = b.shapes[name]
    full = tuple(src[i - (len(shape) - len(src))] if s == -1 else b.size(s) for i, s in enumerate(shape))
    return name if tuple(full) == tuple(src) else b.add(Op.EXPAND, (name,), shape=full)


def _select(b, x, dim, index, **kw):
    return b.add(Op.SELECT, (b.operand(x),), dim=dim % len(b.shapes[b.operand(x)]), index=int(index))


def _select_backward(b, grad, sizes, dim, index, **kw):
    shape = tuple(b.size(s) for s in sizes)
    g = b.operand(grad)
    dim = dim % len(shape)
    if b.shapes[g] != shape[:dim] + shape[dim + 1:]:
        raise b.error("select_backward of unexpected shape", "report this as a flexla bug")
    return b.add(Op.PLACE, (g,), shape=shape, dim=dim, index=int(index))


def _where(b, cond, x, y, **kw):
    return b.add(Op.WHERE, (b.operand(cond), b.operand(x), b.operand(y)))


def _clamp(b, x, lo=None, hi=None, **kw):
    name = b.operand(x)
    if lo is not None:
        name = b.add(Op.MAXIMUM, (name, b.operand(lo)))
    if hi is not None:
        name = b.add(Op.MINIMUM, (name, b.operand(hi)))
    return name


def _pow(b, x, e, **kw):
    if not isinstance(e, numbers.Number):
        raise b.error("pow with a tensor exponent", "use exp(e * log(x))")
    if e == 2:
        return b.add(Op.MUL, (b.operand(x), b.operand(x)))
    if e == 1:
        return b.operand(x)
    if e == 0.5:
        return b.add(Op.SQRT, (b.operand(x),))
    if e == -0.5:
        return b.add(Op.RSQRT, (b.operand(x),))
    return b.add(Op.POW, (b.operand(x),), exponent=float(e))


def _expm1(b, x, **kw):
    return b.add(Op.SUB, (b.add(Op.EXP, (b.operand(x),)), b.operand(1.0)))


def _log1p(b, x, **kw):
    return b.add(Op.LOG, (b.add(Op.ADD, (b.operand(x), b.operand(1.0))),))


def _reciprocal(b, x, **kw):
    return b.add(Op.DIV, (b.operand(1.0), b.operand(x)))


def _tril(op):
    return lambda b, x, diagonal=0, **kw: b.add(op, (b.operand(x),), diagonal=int(diagonal))


def _cumsum(b, x, dim, **kw):
    return b.add(Op.CUMSUM, (b.operand(x),), dim=dim % len(b.shapes[b.operand(x)]))


def _flip(b, x, dims, **kw):
    """Only flip-cumsum-flip (the backward of cumsum) is supported; it becomes one REVCUMSUM."""
    name = b.operand(x)
    node = next(n for n in b.nodes if n.name == name)
    if len(dims) == 1 and node.op is Op.CUMSUM and node.a["dim"] == dims[0] % len(node.shape):
        inner = next(n for n in b.nodes if n.name == node.inputs[0])
        if inner.op is Op.FLIP:
            return b.add(Op.REVCUMSUM, inner.inputs, dim=node.a["dim"])
    if len(dims) == 1:
        return b.add(Op.FLIP, (name,), dim=dims[0] % len(b.shapes[name]))
    raise b.error("flip", "flip is supported only as part of a reverse cumsum")


def _solve_triangular(b, A, B, *, upper, left=True, unitriangular=False, **kw):
    """linalg.solve_triangular; X A = B (left=False) is solved as A^T X^T = B^T."""
    a, y = b.operand(A), b.operand(B)
    if len(b.shapes[y]) != 2:
        raise b.error("solve_triangular with a vector right-hand side", "pass B as a [N, M] matrix (b[:, None])")
    if left:
        return b.add(Op.TRISOLVE, (a, y), upper=bool(upper), unit=bool(unitriangular))
    at, yt = b.add(Op.TRANSPOSE, (a,)), b.add(Op.TRANSPOSE, (y,))
    return b.add(Op.TRANSPOSE, (b.add(Op.TRISOLVE, (at, yt), upper=not upper, unit=bool(unitriangular)),))


def _masked_fill(b, x, mask, value, **kw):
    return b.add(Op.WHERE, (b.operand(mask), b.operand(value), b.operand(x)))


def _sign(b, x, **kw):
    x = b.operand(x)
    zero, one = b.operand(0.0), b.operand(1.0)
    pos = b.add(Op.WHERE, (b.add(Op.GT, (x, zero)), one, zero))
    return b.add(Op.SUB, (pos, b.add(Op.WHERE, (b.add(Op.LT, (x, zero)), one, zero))))


def _tanh(b, x, **kw):
    two = b.operand(2.0)
    s = b.add(Op.SIGMOID, (b.add(Op.MUL, (b.operand(x), two)),))
    return b.add(Op.SUB, (b.add(Op.MUL, (s, two)), b.operand(1.0)))


def functional(target):
    """aten.sub_.Tensor -> aten.sub.Tensor: the out-of-place twin of an in-place op, or None."""
    name = target.overloadpacket.__name__
    if not name.endswith("_"):
        return None
    packet = getattr(aten, name[:-1], None)
    return getattr(packet, target._overloadname, None) if packet is not None else None


def _eye(b, n, *args, **kw):
    m = args[0] if args and isinstance(args[0], int) else n
    if m != n:
        raise b.error("a non-square eye", "use torch.eye(n)")
    return b.add(Op.EYE, shape=(b.size(n), b.size(n)))


def _arange(b, *args, **kw):
    ints = [a for a in args if isinstance(a, int)]
    if len(ints) != 1:
        raise b.error("arange with a start or step", "use torch.arange(n) and arithmetic on the result")
    return b.add(Op.ARANGE, shape=(b.size(ints[0]),))


def _gated(op):
    return lambda b, x, y, g, **kw: b.add(op, (b.operand(x), b.operand(y), b.operand(g)))


HANDLERS = {
    aten.mm.default: _binary(Op.MM),
    aten.add.Tensor: _add(Op.ADD), aten.sub.Tensor: _add(Op.SUB),
    aten.mul.Tensor: _binary(Op.MUL), aten.div.Tensor: _binary(Op.DIV),
    aten.add.Scalar: _add(Op.ADD), aten.sub.Scalar: _add(Op.SUB),
    aten.mul.Scalar: _binary(Op.MUL), aten.div.Scalar: _binary(Op.DIV),
    aten.maximum.default: _binary(Op.MAXIMUM), aten.minimum.default: _binary(Op.MINIMUM),
    aten.gt.Scalar: _binary(Op.GT), aten.gt.Tensor: _binary(Op.GT),
    aten.ge.Scalar: _binary(Op.GE), aten.ge.Tensor: _binary(Op.GE),
    aten.lt.Scalar: _binary(Op.LT), aten.lt.Tensor: _binary(Op.LT),
    aten.le.Scalar: _binary(Op.LE), aten.le.Tensor: _binary(Op.LE),
    aten.eq.Scalar: _binary(Op.EQ), aten.eq.Tensor: _binary(Op.EQ),
    aten.neg.default: _unary(Op.NEG), aten.exp.default: _unary(Op.EXP), aten.log.default: _unary(Op.LOG),
    aten.sqrt.default: _unary(Op.SQRT), aten.rsqrt.default: _unary(Op.RSQRT),
    aten.abs.default: _unary(Op.ABS), aten.sigmoid.default: _unary(Op.SIGMOID),
    aten.expm1.default: _expm1, aten.log1p.default: _log1p,
    aten.reciprocal.default: _reciprocal, prims.reciprocal.default: _reciprocal,
    aten.pow.Tensor_Scalar: _pow, aten.where.self: _where, aten.clamp.default: _clamp,
    aten.permute.default: _transpose, aten.t.default: _transpose, aten.transpose.int: _transpose,
    aten.view.default: _reshape, aten.reshape.default: _reshape, aten._unsafe_view.default: _reshape,
    aten.unsqueeze.default: lambda b, x, dim, **kw: b.add(Op.UNSQUEEZE, (b.operand(x),), dim=dim),
    aten.squeeze.dim: _squeeze, aten.squeeze.dims: _squeeze, aten.squeeze.default: _squeeze,
    aten.expand.default: _expand,
    aten.sum.dim_IntList: _sum, aten.sum.default: _sum, aten.amax.default: _amax,
    aten.cumsum.default: _cumsum, aten.flip.default: _flip,
    aten.tril.default: _tril(Op.TRIL), aten.triu.default: _tril(Op.TRIU),
    aten.select.int: _select, aten.select_backward.default: _select_backward,
    aten.ones.default: _full(1.0), aten.zeros.default: _full(0.0),
    aten.full.default: lambda b, size, value, **kw: _full(value)(b, size),
    aten.ones_like.default: _full_like(1.0), aten.zeros_like.default: _full_like(0.0),
    aten.full_like.default: _full_like(), aten.new_zeros.default: _new_full(0.0),
    aten.new_ones.default: _new_full(1.0), aten.new_full.default: _new_full(),
    aten.scalar_tensor.default: lambda b, v, **kw: b.operand(float(v)),
    aten.linalg_solve_triangular.default: _solve_triangular,
    torch.ops.flexla.gated_scores.default: _gated(Op.GATED_SCORES),
    torch.ops.flexla.gated_apply.default: _gated(Op.GATED_APPLY),
    torch.ops.flexla.gated_apply_t.default: _gated(Op.GATED_APPLY_T),
    aten.masked_fill.Scalar: _masked_fill, aten.masked_fill.Tensor: _masked_fill,
    aten.sgn.default: _sign, aten.sign.default: _sign, aten.tanh.default: _tanh,
    aten.logical_and.default: _binary(Op.AND),
    aten.fill.Scalar: lambda b, x, value, **kw: _full_like(value)(b, x),
    aten.empty_like.default: _full_like(0.0),
    aten.eye.default: _eye, aten.arange.default: _arange, aten.arange.start: _arange,
    aten.clone.default: _identity, aten.alias.default: _identity, aten.detach.default: _identity,
    aten._to_copy.default: _identity, aten.lift_fresh_copy.default: _identity,
    aten.contiguous.default: _identity,
}


def to_ir(gm: torch.fx.GraphModule, inputs: list[tuple[str, tuple]], outputs: list[str], name: str,
          sizes: dict = TRACE_SIZES) -> Graph:
    """inputs: (role, symbolic shape) per placeholder, in order; outputs: a role per returned value;
    sizes: the concrete C, K, V the trace was made with."""
    b = Builder(sizes)
    b.env = {}
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for ph, (role, shape) in zip(placeholders, inputs):
        b.env[ph] = b.add(Op.INPUT, name=role, role=role, shape=tuple(shape))
    result = None
    for node in gm.graph.nodes:
        if node.op == "call_function":
            b.loc = node.meta.get("stack_trace")
            handler = HANDLERS.get(node.target)
            twin = functional(node.target) if handler is None else None
            if twin in HANDLERS:            # in-place op: compute it, then rebind the mutated input
                b.env[node] = b.env[node.args[0]] = HANDLERS[twin](b, *node.args, **node.kwargs)
                continue
            if handler is None:
                raise b.error(f"torch op `{node.target}` is not supported by flexla",
                              "write it with supported ops (see docs/variants.md, 'Supported operations')")
            b.env[node] = handler(b, *node.args, **node.kwargs)
        elif node.op == "output":
            result = node.args[0]
    flat = list(_flatten(result))
    if len(flat) != len(outputs):
        raise CallbackError("update/merge", None, "unexpected number of results", "report this as a flexla bug")
    out = {}
    for role, x in zip(outputs, flat):
        out[role] = b.operand(x) if x is not None else b.add(Op.FULL, value=0.0, shape=())
    needed = Graph(b.nodes, out).ancestors(out.values())
    stray = [n for n in b.nodes if n.op is Op.FLIP and n.name in needed]
    if stray:
        b.loc = stray[0].loc
        raise b.error("flip", "flip is supported only as part of a reverse cumsum")
    return Graph(b.nodes, out, {"name": name})


def _flatten(x):
    if isinstance(x, (list, tuple)):
        for y in x:
            yield from _flatten(y)
    else:
        yield x
