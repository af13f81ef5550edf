"""The autograd.Function around a compiled variant: forward saves its inputs (and its output where
the backward reads it, and its chunk states where the backward can use them, launch.KeptStates);
the backward recomputes the chunk states where they were not kept and runs the derived backward
kernels."""
from __future__ import annotations

import torch

from . import launch


class LinearAttentionFunction(torch.autograd.Function):
    """apply(compiled, opts, q, k, v, *initial_states, *extras) -> (o, *final_states).
    An initial state may be None (then all are); final states are None unless asked for."""

    @staticmethod
    def forward(ctx, compiled, opts, q, k, v, *rest):
        n = len(compiled.meta["states"])
        h0s, extras = rest[:n], rest[n:]
        h0s = None if h0s[0] is None else list(h0s)
        o, hts, kept = launch.forward(compiled, q, k, v, extras, opts["scale"], h0s, opts["output_final_state"],
                                      opts["chunk_size"], opts["schedule"], keep=True, per_token=opts["per_token"])
        keep_o = o if compiled.meta["bwd_reads_o"] else None     # passes/forward_output.py
        ctx.save_for_backward(q, k, v, keep_o, *(h0s or [None] * n), *extras, *(kept.tensors() if kept else []))
        ctx.compiled, ctx.opts, ctx.n, ctx.n_extras = compiled, opts, n, len(extras)
        ctx.kept = kept.layout() if kept else None
        return (o, *(hts if hts is not None else [None] * n))

    @staticmethod
    def backward(ctx, do, *dhts):
        q, k, v, o, *rest = ctx.saved_tensors
        n, n_extras = ctx.n, ctx.n_extras
        h0s, extras, opts = rest[:n], rest[n:n + n_extras], ctx.opts
        kept = launch.KeptStates.rebuilt(ctx.kept, rest[n + n_extras:]) if ctx.kept else None
        h0s = None if h0s[0] is None else list(h0s)
        dhts = None if all(d is None for d in dhts) else [
            (d if d is not None else torch.zeros_like(h)).contiguous()
            for d, h in zip(dhts, launch.final_state_like(ctx.compiled, q, v))]
        dq, dk, dv, dextras, dh0s = launch.backward(
            ctx.compiled, q, k, v, extras, opts["scale"], h0s, do.contiguous(), dhts, opts["chunk_size"],
            opts["per_token"], opts["schedule"], o, kept)
        return (None, None, dq, dk, dv, *(dh0s or [None] * ctx.n), *dextras)
