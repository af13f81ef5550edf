"""Where one warm forward+backward call's time goes, flexla and FLA (GPU only): host time per call
(20 calls back to back, timed on the host) against the same calls' GPU time (CUDA events), the
kernels of one call (torch profiler) and, for flexla, a cProfile of the host side. A call whose
host time exceeds its kernels' time is host-bound: do_bench then times the host.

    python bench/host_profile.py chunk_linear_attn,chunk_retention [--shape 8,2048,16,128,128]
        [--flexla-only] [--no-cprofile] [--do-bench]

--do-bench also times the forward as gpu_run.py does (triton.testing.do_bench, median, L2 flushed
between calls), three times in a row, against the same with a CUDA graph (no host time at all).
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).parent)]
import gpu_run as g  # noqa: E402

import flexla.ops as fx  # noqa: E402

CALLS = 20


def per_call_ms(fn, n=CALLS):
    """(host ms, GPU ms) per call of fn, n calls back to back."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    start.record()
    for _ in range(n):
        fn()
    host = (time.perf_counter() - t0) / n * 1e3
    end.record()
    torch.cuda.synchronize()
    return host, start.elapsed_time(end) / n


def do_bench(fn):
    from triton.testing import do_bench
    return do_bench(fn, warmup=25, rep=100, return_mode="median")


def kernels(fn, top=16):
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as p:
        fn()
        torch.cuda.synchronize()
    rows = sorted(((e.device_time_total / 1e3, e.key[:60], e.count) for e in p.key_averages() if e.device_time_total),
                  reverse=True)
    return sum(t for t, _, _ in rows), rows[:top]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("ops")
    p.add_argument("--shape", default="8,2048,16,128,128", help="B,T,H,K,V")
    p.add_argument("--flexla-only", action="store_true")
    p.add_argument("--no-cprofile", action="store_true")
    p.add_argument("--do-bench", action="store_true")
    p.add_argument("--top", type=int, default=18, help="cProfile rows printed, by own and by cumulative time")
    args = p.parse_args()
    shape = tuple(int(x) for x in args.shape.split(","))
    peers = {} if args.flexla_only else g.load_fla()
    for op in args.ops.split(","):
        x = g.make_inputs(op, *shape, torch.bfloat16, "cuda", grad=True)
        do = torch.randn_like(x["v"])
        for who, fn in (("flexla", getattr(fx, op)), ("fla", peers.get(op))):
            if fn is None:
                continue

            def forward(fn=fn):
                with torch.no_grad():
                    g.call(fn, op, x)

            def forward_backward(fn=fn):
                o, _ = g.call(fn, op, x)
                o.backward(do)          # gradients accumulate: a few elementwise kernels more than do_bench
            try:
                for _ in range(3):      # compiles and tunes
                    forward_backward()
            except Exception as e:  # noqa: BLE001
                print(f"{op} {who}: {type(e).__name__}: {str(e)[:100]}")
                continue
            if args.do_bench:
                print(f"{op:22s} {who:7s} forward do_bench ms: " + " ".join(
                    f"{do_bench(forward):.3f}" for _ in range(3)) + ", in a CUDA graph: " + " ".join(
                    f"{g.in_graph_ms(forward) or float('nan'):.3f}" for _ in range(3)))
            fwd_host, fwd_gpu = per_call_ms(forward)
            host, gpu = per_call_ms(forward_backward)
            total, top = kernels(forward_backward)
            print(f"{op:22s} {who:7s} forward: host {fwd_host:.3f} ms/call, GPU {fwd_gpu:.3f}; forward+backward: "
                  f"host {host:.3f} ms/call, GPU {gpu:.3f}, kernels {total:.3f} ms")
            for t, name, count in top:
                print(f"    {t:7.3f} ms  x{count:<3d} {name}")
            if who == "flexla" and not args.no_cprofile:
                prof = cProfile.Profile()
                prof.enable()
                for _ in range(CALLS):
                    forward_backward()
                prof.disable()
                torch.cuda.synchronize()
                out = io.StringIO()
                stats = pstats.Stats(prof, stream=out)
                stats.sort_stats("tottime").print_stats(args.top)
                stats.sort_stats("cumulative").print_stats(args.top)
                print(out.getvalue())


if __name__ == "__main__":
    main()
