"""Compiles every kernel of generated modules for Hopper (sm_90) on a machine without a GPU, to
catch what the CPU interpreter cannot: Triton's GPU-only rules (dot shapes, layouts, reshapes).
Triton bundles ptxas, so this needs only the `triton` package; run it with the Triton version the
GPU has, e.g. a venv with triton==3.6.0:

    python -m flexla path delta_rule            # writes the module, prints its path
    /tmp/t36/bin/python bench/compile_hopper.py $(python -m flexla path delta_rule)
"""
from __future__ import annotations

import importlib.util
import sys
import time

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

SCALARS = {"scale": "fp32", "T": "i32", "H": "i32", "G": "i32", "NT": "i32"}


def constants(split: bool) -> dict:
    return dict(K=128, V=128, BC=64, BK=128, BV=64 if split else 128, MASK_C=True, MASK_K=False, MASK_V=False,
                USE_H0=True, USE_HT=True, DOT_DTYPE=tl.bfloat16, DOT_PRECISION="tf32", ACC=tl.float32)


def compile_module(path: str) -> int:
    spec = importlib.util.spec_from_file_location("generated", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    failures = 0
    for name, fn in vars(mod).items():
        if not isinstance(fn, triton.runtime.JITFunction) or name.startswith("_"):
            continue
        consts = constants(split=True)
        sig = {a: "constexpr" if a in consts else SCALARS.get(a, "*fp32" if a.startswith(("h", "dh")) else "*bf16")
               for a in fn.arg_names}
        t0 = time.time()
        try:
            triton.compile(ASTSource(fn, sig, {a: consts[a] for a in fn.arg_names if a in consts}),
                           target=GPUTarget("cuda", 90, 64), options=dict(num_warps=4, num_stages=1))
            print(f"ok    {name:16s} {time.time() - t0:5.1f}s  {path}")
        except Exception as e:  # noqa: BLE001
            failures += 1
            print(f"FAIL  {name:16s} {path}\n{str(e)[:3000]}")
    return failures


if __name__ == "__main__":
    sys.exit(1 if sum(compile_module(p) for p in sys.argv[1:]) else 0)
