"""The longest sequence that forward+backward of simple GLA handles on one GPU at B=1, H=16,
D=128 in bf16: doubles T from 64K until the GPU runs out of memory, then bisects once.

    python bench/longest.py [--schedule fused|chunk]
"""
from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from flexla.ops import chunk_simple_gla  # noqa: E402
from flexla.variants import get  # noqa: E402


def fits(T, H=16, D=128):
    try:
        q, k, v = (torch.randn(1, T, H, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        g = F.logsigmoid(torch.randn(1, T, H, device="cuda") + 3).requires_grad_()
        o, _ = chunk_simple_gla(q, k, v, g)
        o.backward(torch.ones_like(o))
        torch.cuda.synchronize()
        ok = bool(torch.isfinite(q.grad).all())
        peak = torch.cuda.max_memory_allocated() / 2**30
        return ok, peak
    except torch.OutOfMemoryError:
        return False, None
    except RuntimeError:          # e.g. a launch the device refuses: reported, not a crash
        traceback.print_exc()
        return False, None
    finally:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--schedule", default=None)
    args = p.parse_args()
    get("simple_gla").schedule = args.schedule
    T, best, rows = 65536, None, []
    while True:
        ok, peak = fits(T)
        rows.append(dict(T=T, ok=ok, peak_gib=peak))
        print(json.dumps(rows[-1]), flush=True)
        if not ok:
            break
        best, T = T, T * 2
    if best:
        mid = (best + T) // 2 // 64 * 64
        ok, peak = fits(mid)
        rows.append(dict(T=mid, ok=ok, peak_gib=peak))
        best = mid if ok else best
    print(json.dumps(dict(longest_T=best, device=torch.cuda.get_device_name(), schedule=args.schedule or "auto")))


if __name__ == "__main__":
    main()
