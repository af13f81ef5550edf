"""Run by tests/test_precompile.py in a process without the interpreter: compile_all() through real
Triton on a machine without a GPU. A driver that reports an sm_90 device lets JIT warmups compile
for Hopper (Triton bundles ptxas); nothing launches. Prints how many compiles precompile started,
how many kernels the JIT's cache then holds, and whether warming up again (what a launch does
first: the same cache key) found them all."""
import sys

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.backends.driver import DriverBase
from triton.backends.nvidia.driver import ty_to_cpp
from triton.runtime.driver import driver

from flexla.runtime.precompile import _stand_in, compile_all
from flexla.variants import get


class FakeHopper(DriverBase):
    def __init__(self):
        pass

    @staticmethod
    def is_active():
        return True

    def get_current_target(self):
        return GPUTarget("cuda", 90, 32)

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def get_active_torch_device(self):
        return torch.device("cpu")

    def get_device_interface(self):
        return torch.cuda

    def map_python_to_cpp_type(self, ty):
        return ty_to_cpp(ty)

    def get_benchmarker(self):
        raise NotImplementedError

    def get_empty_cache_for_benchmark(self):
        raise NotImplementedError

    def clear_cache(self, cache):
        pass


def main(variant: str, kernel_name: str):
    driver.set_active(FakeHopper())
    module = get(variant).compile().module
    kernel = getattr(module, kernel_name)
    C, K, V, T = 16, 16, 16, 64
    consts = dict(scale=0.25, T=T, H=2, G=1, NT=T // C, K=K, V=V, BC=C, BK=K, BV=V, MASK_C=False, MASK_K=False,
                  MASK_V=False, USE_H0=True, USE_HT=True, DOT_DTYPE=triton.language.bfloat16, DOT_PRECISION="tf32",
                  EXP_DTYPE=triton.language.bfloat16, ACC=triton.language.float32)
    pointers = [torch.empty(4096, dtype=torch.bfloat16) for a in kernel.arg_names if a.endswith("_ptr")]
    configs, passes = [(4, 1), (4, 3)], (0,)
    # compiled with a dry run's stand-ins for the buffers (one element each), then found by the
    # warmups with the full buffers
    light = [_stand_in(p) for p in pointers]
    started = compile_all([(kernel, (4, 1, 2), light, consts, cfg, gates) for cfg in configs for gates in passes])
    cache = kernel.device_caches[0][0]
    held = len(cache)
    for warps, stages in configs:
        kernel.warmup(*pointers, grid=(4, 1, 2), **dict(consts, GATES=0), num_warps=warps, num_stages=stages)
    print(started, held, len(cache))


if __name__ == "__main__":
    main(*sys.argv[1:])
