"""The compiles of a cold forward + backward, one after another against all at once
(runtime/precompile.py), on a machine without a GPU: a driver that reports an sm_90 device
(tests/hopper_precompile.py) lets Triton compile for Hopper, and the Launches are told they are
on a GPU, so the launcher's own dry runs record what a first call on an H100/H200 compiles
(forward, and both ways of the backward's chunk search). Then every recorded kernel is compiled,
and warmed up again to check that a launch would find it. Nothing launches.

    python bench/cold_compile.py gla ahead      # or: serial
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from triton.runtime.driver import driver

sys.path[:0] = [str(Path(__file__).parent.parent / "tests"), str(Path(__file__).parent.parent)]
from hopper_precompile import FakeHopper  # noqa: E402

from flexla.runtime import launch, precompile  # noqa: E402
from flexla.variants import get  # noqa: E402

EXTRAS = {"linear_attn": lambda B, T, H, D: [], "simple_gla": lambda B, T, H, D: [torch.empty(B, T, H)],
          "gla": lambda B, T, H, D: [torch.empty(B, T, H, D)], "retention": lambda B, T, H, D: [torch.empty(H)],
          "delta_rule": lambda B, T, H, D: [torch.empty(B, T, H)]}


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
    if len(sys.argv) != 3 or sys.argv[1] not in EXTRAS or sys.argv[2] not in ("ahead", "serial"):
        sys.exit(__doc__)
    name, mode = sys.argv[1:]
    pretend_gpu()
    compiled = get(name).compile()
    B, T, H, D = 2, 256, 2, 128
    q, k, v, do = (torch.empty(B, T, H, D, dtype=torch.bfloat16) for _ in range(4))
    extras = EXTRAS[name](B, T, H, D)
    per_token = [e.dim() > 1 for e in extras]      # retention's decays are per head
    split = bool(compiled.meta["split_grad_kernels"])
    backward = lambda chunk, split: launch._backward(compiled, q, k, v, extras, 0.1, None, do, None, chunk, per_token,
                                                     "chunk", split)
    jobs, compile_all = [], precompile.compile_all
    precompile.compile_all = jobs.extend            # record only; compiled below, timed
    precompile.ahead_of_time(name, [lambda: launch._forward(compiled, q, k, v, extras, 0.1, None, False, 64, "chunk"),
                                    lambda: backward(64, split), lambda: backward(32, False)])
    warm = lambda job: job[0].warmup(*job[2], grid=job[1], **dict(job[3], GATES=job[5]), num_warps=job[4][0],
                                     num_stages=job[4][1])
    start = time.time()
    if mode == "ahead":
        compile_all(jobs)
    else:
        for job in jobs:
            warm(job)
    took = time.time() - start
    start = time.time()
    for job in jobs:
        warm(job)
    print(f"{name} {mode}: {len(jobs)} kernel compiles in {took:.1f} s; found again in {time.time() - start:.2f} s")


if __name__ == "__main__":
    main()
