"""Tuning candidates compiled at once before the search (runtime/precompile.py). Nothing compiles
under the interpreter, so a fake kernel records what it was asked to compile and under which mode;
the last test compiles for Hopper through real Triton in a process without the interpreter."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from triton.runtime import _async_compile

from flexla.runtime import launch, precompile, tuning


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
    compiles = [((4, 1), 1), ((8, 1), 1), ((8, 1), 2)]
    assert precompile.precompile(k, (4, 2), [torch.zeros(4)], {"BC": 16}, compiles) == 3
    assert sorted(c[:2] for c in k.calls) == compiles
    assert all(c[2] for c in k.calls)                        # handed to Triton's executor, not compiled inline
    assert _async_compile.active_mode.get() is None           # and the mode is left again


def test_nothing_to_overlap_or_a_failure_leaves_the_compiles_to_the_launches():
    assert precompile.precompile(Recorder(), (1,), [], {}, [((4, 1), 0)]) == 0
    assert precompile.precompile(object(), (1,), [], {}, [((4, 1), 0), ((8, 1), 0)]) == 0       # not a JIT kernel
    assert precompile.precompile(Recorder(fail=True), (1,), [], {}, [((4, 1), 0), ((8, 1), 0)]) == 0
    assert _async_compile.active_mode.get() is None


class FailsOnce(Recorder):
    """Fails its first compile, as a Triton warmup did under concurrent parses (below)."""

    def warmup(self, *pointers, **kw):
        if not self.calls and not self.fail:
            self.fail = True
            raise SystemError("AST constructor recursion depth mismatch (before=33, after=97)")
        self.fail = False
        self.calls.append(ast.parse is precompile._locked_parse)


def test_one_failed_compile_leaves_the_others_to_compile_ahead_and_parses_take_turns():
    k = FailsOnce()
    parse = ast.parse
    assert precompile.precompile(k, (1,), [], {}, [((4, 1), 0), ((8, 1), 0), ((8, 2), 0)]) == 2
    assert k.calls == [True, True]              # the rest still compiled, with ast.parse serialised
    assert ast.parse is parse                   # and given back


def test_only_what_the_search_will_launch_is_compiled_early(monkeypatch, tmp_path):
    monkeypatch.setenv("FLEXLA_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("FLEXLA_KERNEL_CONFIG", raising=False)
    tuning.reset()
    consts = {"BK": 64, "BV": 64}
    assert tuning.to_compile("bwd_grads", None, consts) == []               # off the GPU
    assert tuning.to_compile("bwd_grads", "k", consts) == tuning.PER_CHUNK_CANDIDATES
    assert tuning.to_compile("chunk_states", "k", consts) == tuning.LOOP_CANDIDATES + [tuning.SCAN_TWO_WARPGROUPS]
    tuning._remember("k", (8, 1))
    assert tuning.to_compile("bwd_grads", "k", consts) == [(8, 1)]          # remembered: that one
    assert tuning.to_search("k", [(4, 1), (8, 1)]) == [(8, 1)]
    monkeypatch.setenv("FLEXLA_TUNE", "compile")
    assert tuning.to_compile("bwd_grads", "k", consts) == tuning.PER_CHUNK_CANDIDATES
    monkeypatch.setenv("FLEXLA_TUNE", "0")
    assert tuning.to_compile("bwd_grads", "k2", consts) == tuning.PER_CHUNK_CANDIDATES[:1]
    monkeypatch.setenv("FLEXLA_TUNE", "1")
    monkeypatch.setenv("FLEXLA_KERNEL_CONFIG", "bwd_grads=4x3")
    assert tuning.to_compile("bwd_grads", "k2", consts) == [(4, 3)]          # forced
    tuning.reset()


class LaunchLog:
    __name__ = "bwd_grads"

    def __init__(self, order):
        self.order = order

    def __getitem__(self, grid):
        return lambda *a, **kw: self.order.append("launch")


def _launch():
    q = torch.zeros(1, 32, 2, 16)
    return launch.Launch({"variant": "Fake", "gated_kernels": ["bwd_grads"], "v_split": False}, q, q, 16, 1.0,
                         False, False), q


def test_a_launch_compiles_its_candidates_before_choosing(monkeypatch):
    order = []
    monkeypatch.setattr(precompile, "precompile", lambda kernel, grid, ptrs, consts, compiles:
                        order.append(("precompile", compiles)))
    monkeypatch.setattr(tuning, "to_compile", lambda name, key, consts: [(4, 1), (8, 1)])
    monkeypatch.setattr(tuning, "fix_up_config", lambda name, consts: (8, 2))
    monkeypatch.setattr(tuning, "choose", lambda *a, **kw: order.append("choose") or (4, 1))
    L, q = _launch()
    L.run(LaunchLog(order), (2, 1, 2), [q])
    # the fast pass (GATES 1) per candidate, the fix-up pass (GATES 2) once, in its own config
    assert order == [("precompile", [((4, 1), 1), ((8, 1), 1), ((8, 2), 2)]), "choose", "launch", "launch"]


def test_the_fix_up_pass_takes_the_candidate_with_most_warps():
    assert tuning.fix_up_config("bwd_grads", {"BK": 64, "BV": 128}) == (8, 1)
    assert tuning.fix_up_config("bwd_grads", {"BK": 16, "BV": 64}) == (4, 1)   # small tiles: 4 warps only


@pytest.fixture
def compiled_jobs(monkeypatch):
    """What each dry run hands to compile_all (a list of job lists), every kernel at two configs,
    nothing compiled; no pass run dry yet in this process."""
    jobs_per_batch = []
    monkeypatch.setattr(tuning, "to_compile", lambda name, key, consts: [(4, 1), (8, 1)])
    monkeypatch.setattr(precompile, "compile_all", lambda jobs: jobs_per_batch.append(jobs) or len(jobs))
    monkeypatch.setattr(precompile, "_DONE", set())
    return jobs_per_batch


def test_a_dry_run_records_launches_and_compiles_them_together_once(compiled_jobs):
    order, compiled = [], compiled_jobs
    L, q = _launch()
    kernel = LaunchLog(order)
    dry = [lambda: L.run(kernel, (2, 1, 2), [q]), lambda: L.run(kernel, (4, 1, 2), [q])]
    assert precompile.ahead_of_time("pass", dry) == 6         # 2 launches x (2 configs + the fix-up pass)
    assert order == [] and not precompile.recording()          # nothing launched, and the dry run is over
    fix_up = tuning.fix_up_config("bwd_grads", L.consts)
    assert {(job[1], job[4], job[5]) for job in compiled[0]} == {
        (grid, cfg, gates) for grid in [(2, 1, 2), (4, 1, 2)] for cfg, gates in [((4, 1), 1), ((8, 1), 1), (fix_up, 2)]}
    assert precompile.ahead_of_time("pass", dry) == 0          # once per pass and shape
    failing = [lambda: L.run(kernel, (2, 1, 2), [q]), lambda: 1 / 0]
    assert precompile.ahead_of_time("other", failing) == 3     # a failing dry run keeps what it recorded
    assert not precompile.recording()


def test_real_triton_compiles_the_candidates_for_hopper_at_once(tmp_path):
    """Through Triton's own AsyncCompileMode and warmup (not a fake kernel): both candidates of
    linear attention's state scan compile for sm_90 in one batch and land where a launch looks."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path / "triton"), FLEXLA_CACHE_DIR=str(tmp_path / "flexla"))
    out = subprocess.run([sys.executable, str(Path(__file__).parent / "hopper_precompile.py"), "linear_attn",
                          "chunk_states"], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["2", "2", "2"]        # started, cached after, cached after warming up again


def test_dry_runs_of_real_passes_launch_nothing_and_record_every_kernel(compiled_jobs):
    """GLA's forward and both ways of its backward, run dry through the launcher's own code."""
    from flexla.variants import get
    compiled = get("gla").compile()
    B, T, H, D = 1, 40, 2, 16
    q, k, v, do = (torch.randn(B, T, H, D) for _ in range(4))
    g = torch.nn.functional.logsigmoid(torch.randn(B, T, H, D))
    outs = []

    def forward():
        outs.append(launch._forward(compiled, q, k, v, [g], 0.25, None, True, 16, "chunk")[0])

    def backward(split):
        outs.append(launch._backward(compiled, q, k, v, [g], 0.25, None, do, None, 16, [True], "chunk", split)[0])
    assert precompile.ahead_of_time("gla", [forward, lambda: backward(True), lambda: backward(False)]) > 0
    names = {job[0].__name__ for job in compiled_jobs[0]}
    assert {"chunk_states", "chunk_output", "bwd_states", "bwd_grads", *compiled.meta["split_grad_kernels"]} <= names
    assert all(torch.isnan(o).all() for o in outs)         # outputs poisoned (tests/conftest.py), never written


def test_the_forward_records_the_backward_that_will_follow(compiled_jobs):
    """A forward that autograd will differentiate runs the backward's first call dry too (with
    stand-ins for do and the final states' gradients), so both passes' kernels compile in one batch."""
    from flexla.variants import get
    compiled = get("kda").compile()
    B, T, H, D = 1, 40, 2, 16
    q, k, v = (torch.randn(B, T, H, D) for _ in range(3))
    g = torch.nn.functional.logsigmoid(torch.randn(B, T, H, D))
    beta = torch.rand(B, T, H)
    dry = lambda: launch._backward_dry_run(compiled, q, k, v, [g, beta], 0.25, None, True, 16, [True, True], "chunk")
    assert precompile.ahead_of_time("kda", [dry]) > 0
    names = {job[0].__name__ for job in compiled_jobs[0]}
    assert {"chunk_states", "bwd_states"} <= names and names & {"bwd_grads", *compiled.meta["split_grad_kernels"]}
    assert not precompile.recording()
