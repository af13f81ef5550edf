"""Renders a graph as readable Python-like text: one line per node with its shape and origin."""
from __future__ import annotations

from .ops import Op


def _shape(s) -> str:
    return "[" + ", ".join(str(d) for d in s) + "]"


def render(graph) -> str:
    ins = ", ".join(f"{n.name}: {_shape(n.shape)}" for n in graph.inputs)
    lines = [f"def {graph.meta.get('name', 'graph')}({ins}):"]
    for n in graph.nodes:
        if n.op is Op.INPUT:
            continue
        args = list(n.inputs) + [f"{k}={v}" for k, v in n.attrs if k != "shape" or n.op is not Op.EXPAND]
        if n.op in (Op.FULL, Op.EYE, Op.ARANGE, Op.PLACE):
            args = list(n.inputs) + [f"{k}={_shape(v) if k == 'shape' else v}" for k, v in n.attrs]
        text = f"    {n.name} = {n.op.value}({', '.join(map(str, args))})"
        note = _shape(n.shape) + (" bool" if n.dtype == "i1" else "") + (f"  {short_loc(n.loc)}" if n.loc else "")
        lines.append(f"{text:<60} # {note}")
    outs = ", ".join(f"{k}={v}" for k, v in graph.outputs.items())
    lines.append(f"    return dict({outs})")
    return "\n".join(lines)


def short_loc(loc: str) -> str:
    """'intra, /path/to/gla.py:16: code' -> 'intra gla.py:16' (the full text is in error messages)."""
    callback, _, rest = loc.partition(", ")
    path, _, line = rest.partition(":")
    return f"{callback} {path.rsplit('/', 1)[-1]}:{line.split(':', 1)[0]}"
