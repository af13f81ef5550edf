"""The tile-level operations of the IR and the shape each one produces.

Every value in the IR is a tile of one chunk of one head: a scalar, a vector or a matrix whose sizes
are sympy expressions over the symbols C (chunk length), K (key dim) and V (value dim).
"""
from __future__ import annotations

import enum

import sympy

C, K, V = sympy.symbols("C K V", positive=True, integer=True)
Shape = tuple  # tuple[sympy.Expr, ...]


class Op(enum.Enum):
    INPUT = "input"          # attrs: role
    CONST = "const"          # attrs: value            -> scalar
    FULL = "full"            # attrs: value, shape
    EYE = "eye"              # attrs: shape (n, n)
    ARANGE = "arange"        # attrs: shape (n,)       -> 0, 1, ..., n-1
    # elementwise, broadcasting like torch
    ADD = "add"
    SUB = "sub"
    MUL = "mul"
    DIV = "div"
    MAXIMUM = "maximum"
    MINIMUM = "minimum"
    POW = "pow"              # attrs: exponent (a number)
    NEG = "neg"
    EXP = "exp"
    LOG = "log"
    SQRT = "sqrt"
    RSQRT = "rsqrt"
    ABS = "abs"
    SIGMOID = "sigmoid"
    WHERE = "where"          # (cond, a, b)
    GT = "gt"
    GE = "ge"
    LT = "lt"
    LE = "le"
    EQ = "eq"
    AND = "and"
    # structure
    MM = "mm"                # attrs: operand_dtype ("input" | "range" | "fp32"), set by the precision pass
    TRANSPOSE = "transpose"
    UNSQUEEZE = "unsqueeze"  # attrs: dim
    SQUEEZE = "squeeze"      # attrs: dim
    EXPAND = "expand"        # attrs: shape
    SUM = "sum"              # attrs: dims, keepdim
    MAX = "max"              # attrs: dims, keepdim
    CUMSUM = "cumsum"        # attrs: dim
    REVCUMSUM = "revcumsum"  # attrs: dim; y[i] = sum_{j >= i} x[j]
    TRIL = "tril"            # attrs: diagonal
    TRIU = "triu"            # attrs: diagonal
    SELECT = "select"        # attrs: dim, index (negative counts from the end of the valid part)
    PLACE = "place"          # attrs: shape, dim, index; the adjoint of SELECT (zeros elsewhere)
    TRISOLVE = "trisolve"    # (A [N, N], B [N, M]), attrs: upper, unit; X with A X = B, A triangular
    TRIINV = "triinv"        # (A [N, N],), attrs: upper, unit; A's inverse on its valid rows and columns
    GATED_SCORES = "gated_scores"      # (q [N, M], k [N, M], g [N, M]) -> [N, N], see frontend/primitives.py
    GATED_APPLY = "gated_apply"        # (D [N, N], x [N, M], g [N, M]) -> [N, M]
    GATED_APPLY_T = "gated_apply_t"    # (D [N, N], x [N, M], g [N, M]) -> [N, M]
    FLIP = "flip"            # attrs: dim; only while tracing, until flip-cumsum-flip becomes REVCUMSUM


UNARY = {Op.NEG, Op.EXP, Op.LOG, Op.SQRT, Op.RSQRT, Op.ABS, Op.SIGMOID, Op.POW}
BINARY = {Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.MAXIMUM, Op.MINIMUM,
          Op.GT, Op.GE, Op.LT, Op.LE, Op.EQ, Op.AND}
COMPARISONS = {Op.GT, Op.GE, Op.LT, Op.LE, Op.EQ, Op.AND}    # their results are booleans
ELEMENTWISE = UNARY | BINARY | {Op.WHERE}
REDUCTIONS = {Op.SUM, Op.MAX}
GATED = {Op.GATED_SCORES, Op.GATED_APPLY, Op.GATED_APPLY_T}    # products of exp-rescaled rows


class ShapeError(ValueError):
    pass


def broadcast(*shapes: Shape) -> Shape:
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(rank):
        dims = {s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0}
        dims.discard(sympy.Integer(1))
        if len(dims) > 1:
            raise ShapeError(f"cannot broadcast shapes {[tuple(s) for s in shapes]}")
        out.append(dims.pop() if dims else sympy.Integer(1))
    return tuple(out)


def _norm_dim(dim: int, rank: int) -> int:
    return dim + rank if dim < 0 else dim


def infer_shape(op: Op, shapes: list[Shape], attrs: dict) -> Shape:
    """The shape of op applied to operands of the given shapes; raises ShapeError if they do not fit."""
    if op in (Op.CONST,):
        return ()
    if op in (Op.FULL, Op.EYE, Op.ARANGE, Op.PLACE, Op.INPUT):
        return tuple(attrs["shape"])
    if op in ELEMENTWISE:
        return broadcast(*shapes)
    (x, *rest) = shapes
    if op is Op.MM:
        y = rest[0]
        if len(x) != 2 or len(y) != 2 or x[1] != y[0]:
            raise ShapeError(f"mm of {x} and {y}")
        return (x[0], y[1])
    if op is Op.TRIINV:
        if len(x) != 2 or x[0] != x[1]:
            raise ShapeError(f"triangular inverse of {x}")
        return x
    if op is Op.TRISOLVE:
        y = rest[0]
        if len(x) != 2 or x[0] != x[1] or len(y) != 2 or y[0] != x[0]:
            raise ShapeError(f"triangular solve of {x} and {y}")
        return y
    if op in GATED:
        a, b, g = shapes
        if len(b) != 2 or b != g or (op is Op.GATED_SCORES and a != b) or \
                (op is not Op.GATED_SCORES and tuple(a) != (b[0], b[0])):
            raise ShapeError(f"{op.value} of {a}, {b}, {g}")
        return (b[0], b[0]) if op is Op.GATED_SCORES else b
    if op is Op.TRANSPOSE:
        if len(x) != 2:
            raise ShapeError(f"transpose of rank-{len(x)} tile")
        return (x[1], x[0])
    if op is Op.UNSQUEEZE:
        d = _norm_dim(attrs["dim"], len(x) + 1)
        return x[:d] + (sympy.Integer(1),) + x[d:]
    if op is Op.SQUEEZE:
        d = _norm_dim(attrs["dim"], len(x))
        if x[d] != 1:
            raise ShapeError(f"squeeze of dim {d} of size {x[d]}")
        return x[:d] + x[d + 1:]
    if op is Op.EXPAND:
        return broadcast(x, tuple(attrs["shape"]))
    if op in REDUCTIONS:
        dims = {_norm_dim(d, len(x)) for d in attrs["dims"]}
        if attrs["keepdim"]:
            return tuple(sympy.Integer(1) if i in dims else s for i, s in enumerate(x))
        return tuple(s for i, s in enumerate(x) if i not in dims)
    if op in (Op.CUMSUM, Op.REVCUMSUM, Op.TRIL, Op.TRIU, Op.FLIP):
        return x
    if op is Op.SELECT:
        d = _norm_dim(attrs["dim"], len(x))
        return x[:d] + x[d + 1:]
    raise ShapeError(f"no shape rule for {op}")
