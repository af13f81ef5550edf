"""First-call latency: a cold start (empty flexla and Triton caches: trace, codegen, Triton
compile) and a warm start (a new process, caches present), per op, forward and forward+backward.
Each measurement is a fresh Python process, so nothing in memory helps.

    python bench/first_call.py [--ops chunk_gla,...] [--shape 8,2048,16,128]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = textwrap.dedent("""
    import sys, time, torch
    sys.path[:0] = [{root!r}, {bench!r}]
    import gpu_run as g
    import flexla.ops as fx
    B, T, H, K = {shape}
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    dt = torch.bfloat16 if dev == "cuda" else torch.float32
    x = g.make_inputs({op!r}, B, T, H, K, K, dt, dev, grad={bwd})
    t0 = time.perf_counter()
    o, _ = g.call(getattr(fx, {op!r}), {op!r}, x)
    if {bwd}:
        o.float().sum().backward()
    if dev == "cuda":
        torch.cuda.synchronize()
    print("SECONDS", time.perf_counter() - t0)
""")


def first_call(op, shape, bwd, env):
    code = CHILD.format(root=str(ROOT), bench=str(ROOT / "bench"), shape=tuple(shape), op=op, bwd=bwd)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("SECONDS")]
    if out.returncode or not line:
        raise RuntimeError(out.stderr[-2000:])
    return float(line[-1].split()[1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ops", default="chunk_simple_gla,chunk_gla")
    p.add_argument("--shape", default="8,2048,16,128")
    args = p.parse_args()
    shape = [int(s) for s in args.shape.split(",")]
    rows = []
    for op in args.ops.split(","):
        for bwd in (False, True):
            with tempfile.TemporaryDirectory() as cache:
                env = {**os.environ, "FLEXLA_CACHE_DIR": f"{cache}/flexla", "TRITON_CACHE_DIR": f"{cache}/triton"}
                cold = first_call(op, shape, bwd, env)
                warm = first_call(op, shape, bwd, env)
            rows.append(dict(op=op, shape=shape, mode="fwdbwd" if bwd else "fwd", cold_s=round(cold, 2),
                             warm_s=round(warm, 2)))
            print(json.dumps(rows[-1]), flush=True)
    out = Path(os.environ.get("OUT", ROOT / "bench")) / "first_call.json"
    out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
