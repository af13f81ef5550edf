"""Compiling ahead, on threads: a pass's kernels and their tuning candidates all at once.

On a cold start every kernel of a pass compiled on its first launch, each tuning candidate
(runtime/tuning.py: two launch configs, both passes of a gated kernel) one after another, and
compiling is most of a cold first call (docs/performance.md, First call). Triton's compiler spends
most of its time outside the GIL (MLIR passes, LLVM, ptxas), and Triton's AsyncCompileMode hands
the compiles of `warmup` (compile, do not launch) to an executor and puts the results in each
kernel's cache, where the launches find them.

So the first call of a pass at a new shape first runs it dry (`ahead_of_time`): every launch is
recorded rather than made (Launch.run asks `recording()`), with the configs it will be launched
with; then everything recorded compiles at once. A backward that searches its chunk runs both
ways dry, so both ways' kernels compile together too. Compiling early is only an optimisation:
whatever fails here is compiled (or reported) by the launches as before.
"""
from __future__ import annotations

import ast
import contextlib
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar

import torch

from . import tuning

_JOBS: ContextVar[list | None] = ContextVar("flexla_compile_ahead", default=None)
_DONE: set = set()          # the passes (by key) already run dry in this process


def recording() -> bool:
    """Whether launches are being recorded (a dry run) rather than made."""
    return _JOBS.get() is not None


def record(kernel, grid, pointers, consts: dict, compiles) -> None:
    """Note kernel's compiles: one per (config, GATES value) in compiles (a config: num_warps,
    num_stages and any knobs, runtime/tuning.py)."""
    light = [_stand_in(p) for p in pointers]
    _JOBS.get().extend((kernel, grid, light, consts, cfg, gates) for cfg, gates in compiles)


def _stand_in(x):
    """A one-element tensor in place of a buffer the dry run allocated: Triton specialises a pointer
    only on its dtype and 16-byte alignment (as direct.specialisation), so it compiles the same
    kernel, and the dry runs' buffers (every way's states, and the backward's where the forward
    records it too) are not all held until everything has compiled."""
    if isinstance(x, torch.Tensor) and x.numel() > 1 and x.data_ptr() % 16 == 0:
        return torch.empty(1, dtype=x.dtype, device=x.device)
    return x


def ahead_of_time(key, dry_runs, what: str = "") -> int:
    """Once per key in a process: run each of dry_runs (callables that run a pass) with every launch
    recorded, then compile all that was recorded at once (reported when it took a while, i.e. was
    not found in Triton's cache on disk). The number of compiles started."""
    if key in _DONE:
        return 0
    if len(_DONE) > 4096:
        _DONE.clear()
    _DONE.add(key)
    jobs = []
    token = _JOBS.set(jobs)
    try:
        for run in dry_runs:
            run()
    except Exception:  # noqa: BLE001 -- the real run will raise it, or compile what is missing
        pass
    finally:
        _JOBS.reset(token)
    start = time.perf_counter()
    started = compile_all(jobs)
    if time.perf_counter() - start > 1:
        print(f"flexla: {what}: compiled {started} kernel variants at once in {time.perf_counter() - start:.1f}s",
              file=sys.stderr, flush=True)
    return started


def precompile(kernel, grid, pointers, consts: dict, compiles) -> int:
    """Compile one kernel's (config, GATES value) pairs at once (a launch outside a dry run)."""
    return compile_all([(kernel, grid, pointers, consts, cfg, gates) for cfg, gates in compiles])


def compile_all(jobs) -> int:
    """Compile every (kernel, grid, pointers, consts, config, GATES) at once; the
    number of compiles started (0 where there is nothing to overlap or it could not start)."""
    if len(jobs) < 2 or not all(hasattr(job[0], "warmup") for job in jobs):
        return 0
    try:
        from triton.runtime._async_compile import AsyncCompileMode
    except ImportError:
        return 0
    started = 0
    with _one_parse_at_a_time(), ThreadPoolExecutor(min(len(jobs), os.cpu_count() or 1)) as pool:
        with AsyncCompileMode(pool, ignore_errors=True):
            for kernel, grid, pointers, consts, cfg, gates in jobs:
                try:
                    kernel.warmup(*pointers, grid=grid, **dict(consts, GATES=gates, **tuning.knobs(cfg)),
                                  num_warps=cfg[0], num_stages=cfg[1])
                    started += 1
                except Exception:  # noqa: BLE001 -- its launch compiles it (or reports why not)
                    pass
    return started


_PARSE_LOCK = threading.RLock()
_PATCH = {"users": 0, "parse": None}
_PATCH_LOCK = threading.Lock()


def _locked_parse(*args, **kwargs):
    with _PARSE_LOCK:
        return _PATCH["parse"](*args, **kwargs)


@contextlib.contextmanager
def _one_parse_at_a_time():
    """Triton parses each kernel's source (`ast.parse`) in the thread that compiles it, and CPython's
    AST construction (seen on 3.11.7) keeps its recursion depth per interpreter, not per thread: two parses at
    once fail now and then with "SystemError: AST constructor recursion depth mismatch", which cost
    KDA's cold first call its overlap (every compile after the failure ran later, one by one). While
    any compile_all runs, ast.parse takes a lock."""
    with _PATCH_LOCK:
        if _PATCH["users"] == 0:
            _PATCH["parse"], ast.parse = ast.parse, _locked_parse
        _PATCH["users"] += 1
    try:
        yield
    finally:
        with _PATCH_LOCK:
            _PATCH["users"] -= 1
            if _PATCH["users"] == 0:
                ast.parse = _PATCH["parse"]
