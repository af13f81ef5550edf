"""Compiles every kernel of generated modules for Hopper (sm_90) on a machine without a GPU, to
catch what the CPU interpreter cannot: Triton's GPU-only rules (dot shapes, layouts, reshapes).
Triton bundles ptxas, so this needs only the `triton` package; run it with the Triton version the
GPU has, e.g. a venv with triton==3.6.0:

    python -m flexla path delta_rule            # writes the module, prints its path
    /tmp/t36/bin/python bench/compile_hopper.py [--chunk=64] [--warps=4] [--stages=1] [--k=128] [--v=128] [--tail=1] $(python -m flexla path delta_rule)

`--only=chunk_output,bwd_states` compiles those kernels alone; `--dump=DIR` writes each kernel's
TTGIR and PTX there (`<kernel>.ttgir`, `<kernel>.ptx`), to read which loads Triton pipelines.

Each kernel's shared memory is printed; BIG marks one over an H100/H200's 227 KB, which the launcher
runs at half the chunk instead (runtime/launch.py, with_fitting_chunk).
"""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

SCALARS = {"scale": "fp32", "T": "i32", "H": "i32", "G": "i32", "NT": "i32"}
SHARED_LIMIT = 232448       # bytes of shared memory per block on an H100 / H200


# flags: --chunk, --warps, --stages, --k, --v, --arch (80 compiles for Ampere), --tail=1 (a partial
# last chunk, MASK_C, as when T % chunk != 0), --fixup=1 (the gated kernels' fix-up pass, not the fast one),
# --scan-bk=64 (the state scans split along K into slices of 64, as the launcher does for few heads),
# --grad-bk=64 (the gradient kernels that may split K, META k_split_grads, in slices of 64),
# --grad-bv=64 (the gradient kernels that walk V in a loop, META v_loop_grads, in slices of 64),
# --early-loads=1 (the output kernel with every load at the top: its tuned EARLY_LOADS knob);
# chunk_output_k_loop and the prep kernels that walk K (*_prep_k_loop) take K in slices of 64, as
# the launcher has it (OUTPUT_LOOP_BK, PREP_LOOP_BK), and V too where such a prep walks V
DEFAULTS = dict(chunk=64, warps=4, stages=1, k=128, v=128, arch=90, tail=0, fixup=0, scan_bk=0, grad_bk=0,
                grad_bv=0, early_loads=0)
SCANS = ("chunk_states", "bwd_states")


def constants(split: bool, gated: bool, scan: bool, o: dict, k_split: bool = False, v_loop: bool = False,
              k_loop: bool = False, walks_v: bool = False) -> dict:
    bk = o["scan_bk"] if scan else o["grad_bk"] if k_split else 64 if k_loop else 0
    return dict(K=o["k"], V=o["v"], BC=o["chunk"], BK=min(o["k"], bk or o["k"]),
                BV=o["v"] // 2 if split else min(o["v"], o["grad_bv"] or o["v"]) if v_loop else
                min(o["v"], 64) if walks_v else o["v"],
                MASK_C=bool(o["tail"]), MASK_K=False, MASK_V=False, USE_H0=True, USE_HT=True,
                GATES=(2 if o["fixup"] else 1) if gated else 0,
                DOT_DTYPE=tl.bfloat16, DOT_PRECISION="tf32", EXP_DTYPE=tl.bfloat16, ACC=tl.float32,
                EARLY_LOADS=o["early_loads"])


def splits_v(name: str, meta: dict) -> bool:
    """Whether the launcher splits V for this kernel (runtime/launch.py)."""
    if name.startswith(("bwd_grads", "chunk_prep", "bwd_prep")) or name in ("bwd", "chunk_output", "chunk_output_k_loop"):
        return False
    return meta["bwd_v_split"] if name == "bwd_states" else meta["v_split"]


def buffer_types(meta: dict, backward: bool) -> dict:
    """The element type of each buffer between kernels (states, their gradients, staged tensors) as
    the launcher allocates it (runtime/launch.py): bf16 only where the compiler found it read as
    matrix-product operands alone, else fp32. An fp32 buffer read as bf16 here would understate
    the kernel's shared memory."""
    low = {f"staged_{name}_ptr": low for name, _, low in meta["staged"] + meta.get("bwd_staged", [])}
    states = meta["bwd_states_in_input_dtype" if backward else "states_in_input_dtype"]
    for kind, flags in (("states", states), ("dstates", meta["dstates_in_input_dtype"])):
        low.update({f"{kind}{f'_{i}' if i else ''}_ptr": f for i, f in enumerate(flags)})
    return {ptr: "*bf16" if f else "*fp32" for ptr, f in low.items()}


def pointer_type(arg: str, buffers: dict) -> str:
    """Inputs bf16, initial and final states fp32, buffers between kernels as buffer_types says."""
    if arg == "gate_flags_ptr":
        return "*i32"
    if arg.startswith(("h", "dh")):
        return "*fp32"
    return buffers.get(arg, "*bf16")


def registers(ptx: str, arch: int) -> str:
    """ptxas's register count and spill bytes per thread for one kernel (`ptxas -v`)."""
    from triton.backends.nvidia.compiler import get_ptxas
    with tempfile.NamedTemporaryFile("w", suffix=".ptx") as f:
        f.write(ptx)
        f.flush()
        gpu = f"sm_{arch}{'a' if arch == 90 else ''}"
        err = subprocess.run([get_ptxas(arch).path, "-v", f"--gpu-name={gpu}", f.name, "-o", "/dev/null"],
                             capture_output=True, text=True).stderr
    regs = re.search(r"Used (\d+) registers", err)
    spill = re.search(r"(\d+) bytes spill stores", err)
    return f"regs {regs.group(1) if regs else '?':>3s}  spills {spill.group(1) if spill else '?':>5s} B"


def compile_module(path: str, o: dict, only: set | None = None, dump: str | None = None) -> int:
    spec = importlib.util.spec_from_file_location("generated", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    failures = 0
    for name, fn in vars(mod).items():
        if not isinstance(fn, triton.runtime.JITFunction) or name.startswith("_") or (only and name not in only):
            continue
        consts = constants(splits_v(name, mod.META), name in mod.META["gated_kernels"], name in SCANS, o,
                           name in mod.META.get("k_split_grads", ()), name in mod.META.get("v_loop_grads", ()),
                           name.endswith("_k_loop"), name in mod.META.get("prep_walks_v", ()))
        buffers = buffer_types(mod.META, name.startswith("bwd"))
        sig = {a: "constexpr" if a in consts else SCALARS.get(a, pointer_type(a, buffers)) for a in fn.arg_names}
        t0 = time.time()
        try:
            # what the launcher specialises on at run time: 16-byte aligned pointers, T % 16 == 0
            attrs = {(i,): [["tt.divisibility", 16]] for i, a in enumerate(fn.arg_names)
                     if sig[a].startswith("*") or a in ("T", "NT")}
            k = triton.compile(ASTSource(fn, sig, {a: consts[a] for a in fn.arg_names if a in consts}, attrs),
                               target=GPUTarget("cuda", o["arch"], 32),
                               options=dict(num_warps=o["warps"], num_stages=o["stages"]))
            shared = k.metadata.shared
            if dump:
                for kind in ("ttgir", "ptx"):
                    (Path(dump) / f"{name}.{kind}").write_text(k.asm[kind])
            fits = "ok  " if shared <= SHARED_LIMIT else "BIG "   # the launcher then halves the chunk
            print(f"{fits}  {name:16s} {time.time() - t0:5.1f}s  shared {shared / 1024:6.1f} KB  BV {consts['BV']}  "
                  f"{registers(k.asm['ptx'], o['arch'])}  {path}")
        except Exception as e:  # noqa: BLE001
            failures += 1
            cause = e.__cause__ or e.__context__
            print(f"FAIL  {name:16s} {path}\n{str(e)[-1500:]}\ncaused by: {cause!r}"[:4000])
    return failures


if __name__ == "__main__":
    named = {a[2:].split("=")[0].replace("-", "_"): a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--")}
    only, dump = named.pop("only", None), named.pop("dump", None)
    if dump:
        Path(dump).mkdir(parents=True, exist_ok=True)
    opts = dict(DEFAULTS, **{a: int(x) for a, x in named.items()})
    paths = [p for p in sys.argv[1:] if not p.startswith("--")]
    sys.exit(1 if sum(compile_module(p, opts, set(only.split(",")) if only else None, dump) for p in paths) else 0)
