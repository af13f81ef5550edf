"""A kernel's tuning candidates compiled at once, on threads, before the search launches them.

On a cold start each candidate of each kernel (runtime/tuning.py: two launch configs, both passes
of a gated kernel) compiled on its first launch, one after another, and compiling is most of a
cold first call (docs/performance.md, First call). Triton's compiler spends most of its time
outside the GIL (MLIR passes, LLVM, ptxas): eight of the delta rule's Hopper kernels compiled in
5.6 s on two threads against 10.7 s one after another (a 2-core machine, Triton 3.6). Triton's
AsyncCompileMode hands the compiles of `warmup` (compile, do not launch) to an executor and puts
the results in the kernel's cache, where the search's launches find them. Compiling early is only
an optimisation: whatever fails here is compiled (or reported) by the launches as before.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor


def precompile(kernel, grid, pointers, consts: dict, configs, passes) -> int:
    """Compile `kernel` for every (num_warps, num_stages) in configs and GATES value in passes;
    the number of compiles started (0 where there is nothing to overlap or it could not start)."""
    jobs = [(cfg, gates) for cfg in configs for gates in passes]
    if len(jobs) < 2 or not hasattr(kernel, "warmup"):
        return 0
    try:
        from triton.runtime._async_compile import AsyncCompileMode
        with ThreadPoolExecutor(min(len(jobs), os.cpu_count() or 1)) as pool:
            with AsyncCompileMode(pool, ignore_errors=True):
                for (warps, stages), gates in jobs:
                    kernel.warmup(*pointers, grid=grid, **dict(consts, GATES=gates), num_warps=warps,
                                  num_stages=stages)
    except Exception:  # noqa: BLE001 -- the launches compile what is missing
        return 0
    return len(jobs)
