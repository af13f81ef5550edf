"""The check that `update` is affine in S (DESIGN §1): S may only be scaled by S-free tensors,
multiplied by S-free matrices, added to, and reshaped. Then the chunk recurrence is a linear scan,
and its gradient is again a linear scan running backwards."""
from __future__ import annotations

from ..ir import Graph, Op
from .errors import CallbackError
from .locations import callback_of

LINEAR = {Op.ADD, Op.SUB, Op.NEG, Op.TRANSPOSE, Op.UNSQUEEZE, Op.SQUEEZE, Op.EXPAND, Op.SUM,
          Op.SELECT, Op.PLACE, Op.TRIL, Op.TRIU, Op.CUMSUM, Op.REVCUMSUM}


def check_affine(graph: Graph, states) -> None:
    """Every next state must be affine in the states entering the chunk (jointly)."""
    s_dep = graph.descendants([s.name for s in states])
    path = graph.ancestors([graph.outputs[s.next] for s in states]) & s_dep
    for n in graph.nodes:
        if n.name not in path or n.op is Op.INPUT:
            continue
        dep = [i in s_dep for i in n.inputs]
        ok = (n.op in LINEAR
              or (n.op in (Op.MUL, Op.MM) and sum(dep) == 1)
              or (n.op is Op.DIV and dep == [True, False])
              or (n.op is Op.TRISOLVE and dep == [False, True]))
        if not ok:
            where = n.loc.split(", ", 1)[1] if n.loc and ", " in n.loc else None
            raise CallbackError(
                callback_of(n.loc) if n.loc else "update", where,
                f"the next state is not affine in S: `{n.op.value}` is applied to a value that depends on S",
                "update may only scale S by tensors from intra, multiply it by matrices from intra and add "
                "to it (e.g. S * c['decay'] + c['kv']); put nonlinear uses of S in merge, which may be nonlinear")
