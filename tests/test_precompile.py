"""Tuning candidates compiled at once before the search (runtime/precompile.py). Nothing compiles
under the interpreter, so a fake kernel records what it was asked to compile and under which mode;
the last test compiles for Hopper through real Triton in a process without the interpreter."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from triton.runtime import _async_compile

from flexla.runtime import launch, tuning
from flexla.runtime.precompile import precompile


class Recorder:
    __name__ = "bwd_grads"

    def __init__(self, fail=False):
        self.calls, self.fail = [], fail

    def warmup(self, *pointers, grid, num_warps, num_stages, **consts):
        if self.fail:
            raise RuntimeError("no driver")
        self.calls.append(((num_warps, num_stages), consts["GATES"], _async_compile.active_mode.get() is not None))


def test_every_config_and_gate_pass_compiles_in_one_async_batch():
    k = Recorder()
    assert precompile(k, (4, 2), [torch.zeros(4)], {"BC": 16}, [(4, 1), (8, 1)], (1, 2)) == 4
    assert sorted(c[:2] for c in k.calls) == [((4, 1), 1), ((4, 1), 2), ((8, 1), 1), ((8, 1), 2)]
    assert all(c[2] for c in k.calls)                        # handed to Triton's executor, not compiled inline
    assert _async_compile.active_mode.get() is None           # and the mode is left again


def test_nothing_to_overlap_or_a_failure_leaves_the_compiles_to_the_launches():
    assert precompile(Recorder(), (1,), [], {}, [(4, 1)], (0,)) == 0
    assert precompile(object(), (1,), [], {}, [(4, 1), (8, 1)], (0,)) == 0       # not a JIT kernel
    assert precompile(Recorder(fail=True), (1,), [], {}, [(4, 1), (8, 1)], (0,)) == 0
    assert _async_compile.active_mode.get() is None


def test_only_what_the_search_will_launch_is_compiled_early(monkeypatch, tmp_path):
    monkeypatch.setenv("FLEXLA_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("FLEXLA_KERNEL_CONFIG", raising=False)
    tuning.reset()
    consts = {"BK": 64, "BV": 64}
    assert tuning.to_compile("bwd_grads", None, consts) == []               # off the GPU
    assert tuning.to_compile("bwd_grads", "k", consts) == tuning.PER_CHUNK_CANDIDATES
    assert tuning.to_compile("chunk_states", "k", consts) == tuning.LOOP_CANDIDATES
    tuning._remember("k", (8, 1))
    assert tuning.to_compile("bwd_grads", "k", consts) == []                # remembered
    monkeypatch.setenv("FLEXLA_TUNE", "compile")
    assert tuning.to_compile("bwd_grads", "k", consts) == tuning.PER_CHUNK_CANDIDATES
    monkeypatch.setenv("FLEXLA_TUNE", "0")
    assert tuning.to_compile("bwd_grads", "k2", consts) == []
    monkeypatch.setenv("FLEXLA_TUNE", "1")
    monkeypatch.setenv("FLEXLA_KERNEL_CONFIG", "bwd_grads=4x1")
    assert tuning.to_compile("bwd_grads", "k2", consts) == []               # forced
    tuning.reset()


def test_a_launch_compiles_its_candidates_before_choosing(monkeypatch):
    order = []
    monkeypatch.setattr(launch, "precompile", lambda kernel, grid, ptrs, consts, cfgs, passes:
                        order.append(("precompile", cfgs, passes)))
    monkeypatch.setattr(tuning, "to_compile", lambda name, key, consts: [(4, 1), (8, 1)])
    monkeypatch.setattr(tuning, "choose", lambda *a, **kw: order.append("choose") or (4, 1))
    q = v = torch.zeros(1, 32, 2, 16)
    L = launch.Launch({"variant": "Fake", "gated_kernels": ["bwd_grads"], "v_split": False}, q, v, 16, 1.0,
                      False, False)

    class Kernel:
        __name__ = "bwd_grads"

        def __getitem__(self, grid):
            return lambda *a, **kw: order.append("launch")
    L.run(Kernel(), (2, 1, 2), [q])
    assert order == [("precompile", [(4, 1), (8, 1)], (1, 2)), "choose", "launch", "launch"]


def test_real_triton_compiles_the_candidates_for_hopper_at_once(tmp_path):
    """Through Triton's own AsyncCompileMode and warmup (not a fake kernel): both candidates of
    linear attention's state scan compile for sm_90 in one batch and land where a launch looks."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path / "triton"), FLEXLA_CACHE_DIR=str(tmp_path / "flexla"))
    out = subprocess.run([sys.executable, str(Path(__file__).parent / "hopper_precompile.py"), "linear_attn",
                          "chunk_states"], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["2", "2", "2"]        # started, cached after, cached after warming up again
