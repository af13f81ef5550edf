"""Where the time goes: per-kernel GPU time of one forward (or forward+backward) call, flexla next
to the peer, so that work goes to the kernel that costs most. Not a benchmark: the profiler adds
launch overhead; use gpu_run.py for the times that count.

    python bench/profile_kernels.py --ops chunk_gla,chunk_kda --modes fwd,fwdbwd
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

import flexla.ops as fx  # noqa: E402
from gpu_run import OPS, SHAPES, call, load_fla, log, make_inputs  # noqa: E402


def kernel_times(run, iters):
    """Mean GPU microseconds per call of every kernel `run` launches, largest first."""
    for _ in range(3):
        run()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            run()
        torch.cuda.synchronize()
    per = defaultdict(float)
    for e in prof.key_averages():
        if e.device_type == torch.autograd.DeviceType.CUDA and e.self_device_time_total > 0:
            per[e.key[:60]] += e.self_device_time_total / iters
    return sorted(per.items(), key=lambda kv: -kv[1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ops", default=",".join(OPS))
    p.add_argument("--modes", default="fwd,fwdbwd")
    p.add_argument("--shapes", default="one", choices=sorted(SHAPES))
    p.add_argument("--peer", action="store_true", help="profile the peer too")
    p.add_argument("--iters", type=int, default=10)
    args = p.parse_args()
    peers = load_fla() if args.peer else {}
    rows = []
    for shape in SHAPES[args.shapes]:
        for mode in args.modes.split(","):
            for op in args.ops.split(","):
                for who, fn in (("flexla", getattr(fx, op)), ("peer", peers.get(op))):
                    if fn is None or hasattr(fn, "head_first"):
                        continue
                    x = make_inputs(op, *shape, torch.bfloat16, "cuda", grad=mode == "fwdbwd")
                    o, _ = call(fn, op, x)
                    do = torch.randn_like(o)

                    def run():
                        o, _ = call(fn, op, x)
                        if mode == "fwdbwd":
                            o.backward(do)
                    try:
                        times = kernel_times(run, args.iters)
                    except Exception as e:  # noqa: BLE001
                        log(f"{who} {op} {mode}: {type(e).__name__}: {str(e)[:200]}")
                        continue
                    total = sum(t for _, t in times)
                    log(f"{who:6s} {op} {shape} {mode}: {total:8.1f} us in {len(times)} kernels")
                    for name, t in times[:12]:
                        print(f"    {t:8.1f} us {100 * t / total:5.1f}%  {name}", flush=True)
                    rows.append(dict(who=who, op=op, shape=list(shape), mode=mode, total_us=round(total, 1),
                                     kernels=[[n, round(t, 1)] for n, t in times]))
                    del x
    out = Path(os.environ.get("OUT", "/tmp"))
    (out / "profile.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
