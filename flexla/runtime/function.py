"""The autograd.Function around a compiled variant: forward saves only its inputs; the backward
recomputes the chunk states and runs the derived backward kernel."""
from __future__ import annotations

import torch

from . import launch


class LinearAttentionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, compiled, opts, q, k, v, h0, *extras):
        o, ht = launch.forward(compiled, q, k, v, extras, opts["scale"], h0, opts["output_final_state"],
                               opts["chunk_size"], opts["schedule"])
        ctx.save_for_backward(q, k, v, h0, *extras)
        ctx.compiled, ctx.opts = compiled, opts
        if ht is not None:
            return o, ht
        return o, None

    @staticmethod
    def backward(ctx, do, dht):
        q, k, v, h0, *extras = ctx.saved_tensors
        opts = ctx.opts
        dq, dk, dv, dextras, dh0 = launch.backward(
            ctx.compiled, q, k, v, extras, opts["scale"], h0, do.contiguous(),
            dht.contiguous() if dht is not None else None, opts["chunk_size"], opts["per_token"],
            opts["schedule"])
        return (None, None, dq, dk, dv, dh0, *dextras)
