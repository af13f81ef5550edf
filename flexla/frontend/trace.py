"""Traces a variant's callbacks on example tiles into torch.fx graphs of aten ops.

The forward step of one chunk of one head is

    o, S_next = merge(S, c), update(S, c)   where   c = intra(q * scale, k, v, *extras)

and the backward step is the vjp of that step, traced the same way (DESIGN §2). Tiles are made
with distinct prime sizes (C=29, K=31, V=37) so that every size in the trace maps back to exactly
one of the symbols C, K, V.
"""
from __future__ import annotations

import torch
import torch.fx.traceback as fx_traceback
from torch._decomp import get_decompositions
from torch.fx.experimental.proxy_tensor import make_fx

from .errors import CallbackError
from .locations import CallbackLocations

TRACE_SIZES = {"C": 29, "K": 31, "V": 37}
SECOND_SIZES = {"C": 23, "K": 41, "V": 43}   # a second trace proves nothing depends on the sizes

aten = torch.ops.aten
# Composite ops rewritten into the small op set the IR knows.
DECOMPOSITIONS = get_decompositions([
    aten.sigmoid_backward, aten.threshold_backward, aten.elu, aten.elu_backward, aten.silu,
    aten.silu_backward, aten.softplus, aten.softplus_backward, aten.log_sigmoid_forward,
    aten.log_sigmoid_backward, aten.rsub, aten.reciprocal, aten.clamp_min, aten.relu, aten.mv,
    aten.dot, aten.square, aten.linalg_vector_norm, aten.tanh_backward,
])


def example(tile: tuple[str, ...], seed: int, sizes: dict) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(tuple(sizes[d] for d in tile), generator=gen) * 0.5 - 0.6


def forward_step(callbacks: dict, n_states: int = 1):
    """step(*states, q, k, v, scale, *extras) -> (o, *next_states) for one chunk of one head."""
    intra, update, merge = callbacks["intra"], callbacks["update"], callbacks["merge"]

    def step(*args):
        states, (q, k, v, scale), extras = args[:n_states], args[n_states:n_states + 4], args[n_states + 4:]
        S = states[0] if n_states == 1 else tuple(states)
        c = intra(q * scale, k, v, *extras)
        if not isinstance(c, dict) or not all(isinstance(x, torch.Tensor) for x in c.values()):
            raise CallbackError("intra", None, f"intra returned {type(c).__name__}, not a dict of tensors",
                                "return dict(name=tensor, ...): the chunk tensors update and merge read")
        o, S_next = merge(S, c), update(S, c)
        _check_result("merge", o, (q.shape[0], v.shape[1]), "[C, V]")
        nexts = (S_next,) if n_states == 1 else tuple(S_next) if isinstance(S_next, (tuple, list)) else ()
        if len(nexts) != n_states:
            raise CallbackError("update", None, f"update returned {type(S_next).__name__}; the variant declares "
                                f"{n_states} states", f"return a tuple of {n_states} tensors, like S")
        for x, s in zip(nexts, states):
            _check_result("update", x, tuple(s.shape), "like S")
        return (o, *nexts)
    return step


def _check_result(name, x, shape, text):
    if not isinstance(x, torch.Tensor) or tuple(x.shape) != shape:
        got = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise CallbackError(name, None, f"{name} returned {got}; it must return a tile of shape {text}",
                            f"make {name} return one tensor of shape {text}")


def backward_step(callbacks: dict, n_states: int = 1):
    """The vjp of the forward step: (*states, q, k, v, scale, *extras, do, *dS_next) ->
    (*dS, dq, dk, dv, *d_extras). Traced through torch.autograd.grad (which, unlike torch.func,
    also runs the autograd formulas of flexla's custom ops); an input the outputs do not depend on
    gets a zero gradient."""
    fwd = forward_step(callbacks, n_states)

    def step(*args):
        states, (q, k, v, scale) = args[:n_states], args[n_states:n_states + 4]
        extras, do, dS_next = args[n_states + 4:-1 - n_states], args[-1 - n_states], args[-n_states:]
        primals = [x.detach().requires_grad_() for x in (*states, q, k, v, *extras)]
        with torch.enable_grad():
            outs = fwd(*primals[:n_states + 3], scale, *primals[n_states + 3:])
            grads = torch.autograd.grad(outs, primals, (do, *dS_next), allow_unused=True)
        return tuple(torch.zeros_like(x) if d is None else d for d, x in zip(grads, primals))
    return step


def trace(fn, callbacks: dict, tiles: list[tuple[str, ...]], sizes: dict = TRACE_SIZES) -> torch.fx.GraphModule:
    """make_fx of fn on example tiles; every op remembers the callback line it came from."""
    args = [example(t, i, sizes) if t != "scalar" else torch.tensor(0.7) for i, t in enumerate(tiles)]

    def located(*xs):
        with CallbackLocations(callbacks):
            return fn(*xs)
    try:
        with fx_traceback.preserve_node_meta():
            return make_fx(located, decomposition_table=DECOMPOSITIONS)(*args)
    except CallbackError:
        raise
    except Exception as e:  # a torch error inside a callback: point at the callback line
        where = _innermost_callback_frame(e, callbacks)
        raise CallbackError(where[0] if where else "intra/update/merge", where[1] if where else None,
                            f"tracing failed: {type(e).__name__}: {e}",
                            "callbacks receive tiles of one chunk of one head: q, k [C, K], v [C, V], "
                            "S [K, V]; check the shapes used on that line") from e


def _innermost_callback_frame(exc, callbacks):
    codes = {fn.__code__: name for name, fn in callbacks.items()}
    found, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code in codes:
            found = (codes[tb.tb_frame.f_code], f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}")
        tb = tb.tb_next
    return found
