"""Compiles every kernel of generated modules for Hopper (sm_90) on a machine without a GPU, to
catch what the CPU interpreter cannot: Triton's GPU-only rules (dot shapes, layouts, reshapes).
Triton bundles ptxas, so this needs only the `triton` package; run it with the Triton version the
GPU has, e.g. a venv with triton==3.6.0:

    python -m flexla path delta_rule            # writes the module, prints its path
    /tmp/t36/bin/python bench/compile_hopper.py [--chunk=64] $(python -m flexla path delta_rule)

Each kernel's shared memory is printed; BIG marks one over an H100/H200's 227 KB, which the launcher
runs at half the chunk instead (runtime/launch.py, with_fitting_chunk).
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
SHARED_LIMIT = 232448       # bytes of shared memory per block on an H100 / H200


def constants(split: bool, chunk: int) -> dict:
    return dict(K=128, V=128, BC=chunk, BK=128, BV=64 if split else 128, MASK_C=True, MASK_K=False, MASK_V=False,
                USE_H0=True, USE_HT=True, DOT_DTYPE=tl.bfloat16, DOT_PRECISION="tf32", EXP_DTYPE=tl.bfloat16,
                ACC=tl.float32)


def splits_v(name: str, meta: dict) -> bool:
    """Whether the launcher splits V for this kernel (runtime/launch.py)."""
    if name in ("bwd", "bwd_grads", "chunk_prep", "bwd_prep", "chunk_output"):   # output: at large grids
        return False
    return meta["bwd_v_split"] if name == "bwd_states" else meta["v_split"]


def compile_module(path: str, chunk: int) -> int:
    spec = importlib.util.spec_from_file_location("generated", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    failures = 0
    for name, fn in vars(mod).items():
        if not isinstance(fn, triton.runtime.JITFunction) or name.startswith("_"):
            continue
        consts = constants(splits_v(name, mod.META), chunk)
        sig = {a: "constexpr" if a in consts else SCALARS.get(a, "*fp32" if a.startswith(("h", "dh")) else "*bf16")
               for a in fn.arg_names}
        t0 = time.time()
        try:
            k = triton.compile(ASTSource(fn, sig, {a: consts[a] for a in fn.arg_names if a in consts}),
                               target=GPUTarget("cuda", 90, 64), options=dict(num_warps=4, num_stages=1))
            shared = k.metadata.shared
            fits = "ok  " if shared <= SHARED_LIMIT else "BIG "   # the launcher then halves the chunk
            print(f"{fits}  {name:16s} {time.time() - t0:5.1f}s  shared {shared / 1024:6.1f} KB  BV {consts['BV']}  "
                  f"{path}")
        except Exception as e:  # noqa: BLE001
            failures += 1
            print(f"FAIL  {name:16s} {path}\n{str(e)[:3000]}")
    return failures


if __name__ == "__main__":
    chunk = int(sys.argv[1][len("--chunk="):]) if sys.argv[1].startswith("--chunk=") else 64
    paths = [p for p in sys.argv[1:] if not p.startswith("--chunk=")]
    sys.exit(1 if sum(compile_module(p, chunk) for p in paths) else 0)
