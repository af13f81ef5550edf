"""The compiles of a cold forward + backward, one after another against all at once
(runtime/precompile.py), on a machine without a GPU: a driver that reports an sm_90 device
(tests/hopper_precompile.py) lets Triton compile for Hopper, and the Launches are told they are
on a GPU, so the launcher's own dry runs record what a first call on an H100/H200 compiles
(forward, and both ways of the backward's chunk search). Then every recorded kernel is compiled,
and warmed up again to check that a launch would find it. Nothing launches.

    python bench/cold_compile.py gla ahead      # or: serial; any shipped variant
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from triton.runtime.driver import driver

sys.path[:0] = [str(Path(__file__).parent.parent / "tests"), str(Path(__file__).parent.parent)]
from hopper_precompile import FakeHopper  # noqa: E402

from flexla.frontend.signature import Extra  # noqa: E402
from flexla.runtime import launch, precompile  # noqa: E402
from flexla.variants import NAMES, get  # noqa: E402



def pretend_gpu():
    driver.set_active(FakeHopper())
    launch.device_name = lambda device: "sm_90 (no GPU)"
    launch.gate_flags = lambda compiled, L, kernels: torch.zeros(L.B * L.H * L.NT, dtype=torch.int32)
    init = launch.Launch.__init__

    def on_gpu(self, *a, **kw):
        init(self, *a, **kw)
        self.device = torch.device("cuda")
    launch.Launch.__init__ = on_gpu


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in NAMES or sys.argv[2] not in ("ahead", "serial"):
        sys.exit(__doc__)
    name, mode = sys.argv[1:]
    pretend_gpu()
    variant = get(name)
    compiled = variant.compile()
    B, T, H, D = 2, 256, 2, 128
    q, k, v, do = (torch.empty(B, T, H, D, dtype=torch.bfloat16) for _ in range(4))
    roles = [Extra(n, variant.declared[n]) for n in variant.extra_names]   # each extra as its tile declares
    extras = [torch.empty(*r.call_shape(B, T, H, D, D), dtype=torch.bfloat16) for r in roles]
    per_token = [r.per_token for r in roles]
    split = bool(compiled.meta["split_grad_kernels"])
    backward = lambda chunk, split: launch._backward(compiled, q, k, v, extras, 0.1, None, do, None, chunk, per_token,
                                                     "chunk", split)
    jobs, compile_all = [], precompile.compile_all
    precompile.compile_all = jobs.extend            # record only; compiled below, timed
    precompile.ahead_of_time(name, [lambda: launch._forward(compiled, q, k, v, extras, 0.1, None, False, 64, "chunk"),
                                    lambda: backward(64, split), lambda: backward(32, False)])
    warm = lambda job: job[0].warmup(*job[2], grid=job[1], **dict(job[3], GATES=job[5]), num_warps=job[4][0],
                                     num_stages=job[4][1])
    start, each = time.time(), []
    if mode == "ahead":
        compile_all(jobs)
    else:               # one after another: each compile's own time, the longest bound a cold call
        for job in jobs:
            t0 = time.time()
            warm(job)
            each.append((time.time() - t0, f"{job[0].fn.__name__} {job[4][0]}x{job[4][1]} BC={job[3]['BC']} "
                                           f"GATES={job[5]}"))
    took = time.time() - start
    start = time.time()
    for job in jobs:
        warm(job)
    print(f"{name} {mode}: {len(jobs)} kernel compiles in {took:.1f} s; found again in {time.time() - start:.2f} s")
    for t, what in sorted(each, reverse=True)[:6]:
        print(f"  {t:6.1f} s  {what}")


if __name__ == "__main__":
    main()
