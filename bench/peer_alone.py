"""One op at one shape, forward, FLA and flexla, in a fresh process (GPU only): the peer tunes on
this shape alone, with nothing else on the GPU. For rows whose peer time moves between benchmark
runs (docs/performance.md): run once per (op, shape), e.g.

    python bench/peer_alone.py chunk_linear_attn 1,32768,16,128,128
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from triton.testing import do_bench

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parent.parent)]
import gpu_run  # noqa: E402
import flexla.ops  # noqa: E402


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    op, shape = sys.argv[1], tuple(int(x) for x in sys.argv[2].split(","))
    x = gpu_run.make_inputs(op, *shape, torch.bfloat16, "cuda")
    times = {}
    for who, fn in (("fla", gpu_run.load_fla()[op]), ("flexla", getattr(flexla.ops, op))):
        gpu_run.call(fn, op, x)          # first call: compile and tune
        torch.cuda.synchronize()
        times[who] = do_bench(lambda: gpu_run.call(fn, op, x), warmup=25, rep=100, return_mode="median")
    print(f"ALONE {op} {shape} fla {times['fla']:.3f} ms flexla {times['flexla']:.3f} ms "
          f"FLA / flexla {times['fla'] / times['flexla']:.2f}")


if __name__ == "__main__":
    main()
