"""Host time per call of the pieces of a flexla call, at a shape so small that the GPU is idle
(GPU only): a call's host time is then all there is. Each line: microseconds of host time per call,
the median of 5 rounds of 200 calls back to back.

    python bench/host_parts.py [--ops chunk_linear_attn,chunk_kda] [--peer]
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from pathlib import Path

import torch
import triton
import triton.language as tl

sys.path[:0] = [str(Path(__file__).parent)]
import gpu_run as g  # noqa: E402



def host_us(fn, n=200, rounds=5):
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t0) / n * 1e6)
        torch.cuda.synchronize()
    return statistics.median(times)


@triton.jit
def _nothing(x, y, z, N: tl.constexpr, M: tl.constexpr):
    pass


class _Identity(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, d):
        return d


def inside(fn, n=200):
    """Host microseconds per call of fn spent inside some of flexla's functions (timed by wrapping
    them), and in all of fn."""
    from flexla.runtime import function, launch
    spent = {}

    def timed(owner, name, static=False):
        f = getattr(owner, name)

        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                spent[name] = spent.get(name, 0) + time.perf_counter() - t0
        setattr(owner, name, staticmethod(wrapper) if static else wrapper)
        return lambda: setattr(owner, name, staticmethod(f) if static else f)
    undo = [timed(function.LinearAttentionFunction, "backward", static=True),
            timed(function.LinearAttentionFunction, "forward", static=True),
            timed(launch, "backward"), timed(launch, "forward"), timed(launch.Launch, "run"),
            timed(launch, "_empty"), timed(launch, "chunk_states")]
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    total = time.perf_counter() - t0
    torch.cuda.synchronize()
    for u in undo:
        u()
    parts = [("all", total)] + list(spent.items())
    return "    inside: " + ", ".join(f"{k} {v / n * 1e6:.1f}" for k, v in parts) + " us"


def fwd_and_grads(fn, op, inputs, do):
    """The output and the gradients of one call, as new tensors (the launches that follow the
    first go straight to the compiled kernels: they must give the same bits)."""
    for t in inputs.values():
        t.grad = None
    o, _ = g.call(fn, op, inputs)
    o.backward(do)
    return [o.detach().clone()] + [t.grad.clone() for t in inputs.values()]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ops", default="chunk_linear_attn,chunk_kda")
    p.add_argument("--peer", action="store_true", help="FLA's too (its first call autotunes)")
    p.add_argument("--cprofile", type=int, default=0,
                   help="then profile the forward + backward, printing this many rows")
    p.add_argument("--shape", default="8,256,16,64,64", help="B,T,H,K,V: small, yet chunk-parallel")
    args = p.parse_args()
    SHAPE = tuple(int(n) for n in args.shape.split(","))
    x = torch.zeros(64, device="cuda")
    print(f"{'torch.empty':40s} {host_us(lambda: torch.empty(64, 64, device='cuda')):8.1f} us")
    print(f"{'elementwise add (one torch kernel)':40s} {host_us(lambda: x.add(1)):8.1f} us")
    print(f"{'triton JIT launch, 3 pointers':40s} {host_us(lambda: _nothing[(1,)](x, x, x, N=4, M=8)):8.1f} us")
    ck = _nothing[(1,)](x, x, x, N=4, M=8)
    print(f"{'triton compiled-kernel launch':40s} {host_us(lambda: ck[(1, 1, 1)](x, x, x, 4, 8)):8.1f} us")
    xi = torch.zeros(64, device="cuda", requires_grad=True)
    d = torch.ones(64, device="cuda")
    print(f"{'autograd.Function identity fwd+bwd':40s} {host_us(lambda: _Identity.apply(xi).backward(d)):8.1f} us")
    peers = g.load_fla() if args.peer else {}
    for op in args.ops.split(","):
        inputs = g.make_inputs(op, *SHAPE, torch.bfloat16, "cuda", grad=True)
        do = torch.randn(*SHAPE[:3], SHAPE[4], device="cuda", dtype=torch.bfloat16)
        for who, fn in (("flexla", g.flexla_op(op)), ("fla", peers.get(op))):
            if fn is None:
                continue

            def fwd(fn=fn):
                with torch.no_grad():
                    g.call(fn, op, inputs)

            def fwd_grad(fn=fn):
                g.call(fn, op, inputs)

            def fwdbwd(fn=fn):
                for t in inputs.values():      # as do_bench's grad_to_none: no accumulation kernels
                    t.grad = None
                o, _ = g.call(fn, op, inputs)
                o.backward(do)
            first = fwd_and_grads(fn, op, inputs, do)
            for name, f in (("forward, no grad", fwd), ("forward, grad", fwd_grad), ("forward + backward", fwdbwd)):
                print(f"{op + ' ' + who + ' ' + name:40s} {host_us(f):8.1f} us", flush=True)
            same = all(torch.equal(a, b) for a, b in zip(first, fwd_and_grads(fn, op, inputs, do)))
            print(f"    the first call's output and gradients again after the timed calls: {same}")
            if who == "flexla":
                print(inside(fwdbwd))
            if args.cprofile and who == "flexla":
                prof = cProfile.Profile()
                prof.runcall(lambda: [fwdbwd() for _ in range(200)])
                torch.cuda.synchronize()
                pstats.Stats(prof).sort_stats("tottime").print_stats(args.cprofile)


if __name__ == "__main__":
    main()
