"""Kernels launched again through their compiled form (runtime/direct.py): the first launch per
Launch, kernel, grid and pointer specialisation goes through the JIT, later ones straight to the
compiled kernel with the same arguments. Off the GPU nothing is compiled, so a fake JIT kernel
stands in, and the Launch is made to believe it is on a GPU."""
import types

import pytest
import torch

from flexla.runtime import launch

META = {"variant": "Fake", "gated_kernels": ["gated_kernel"], "v_split": False}


class FakeCompiled:
    run = function = None

    def __init__(self, log):
        self.log = log

    def __getitem__(self, grid):
        return lambda *args: self.log.append(("direct", grid, args))


class FakeKernel:
    fn = types.SimpleNamespace(__module__="fake")

    def __init__(self, name, log, consts):
        self.__name__, self.log = name, log
        self.arg_names = ["a_ptr", "b_ptr", *consts]

    def __getitem__(self, grid):
        def jit(*pointers, num_warps, num_stages, **consts):
            self.log.append(("jit", grid, pointers, consts["GATES"]))
            return FakeCompiled(self.log)
        return jit


@pytest.fixture
def on_gpu(monkeypatch):
    monkeypatch.setenv("FLEXLA_TUNE", "0")
    monkeypatch.setattr(launch, "device_name", lambda device: "fake")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(launch.Launch, "_kept", {})

    def make(T=64):
        q, v = torch.zeros(1, T, 2, 16), torch.zeros(1, T, 2, 16)
        L = launch.Launch.of(META, q, v, 16, 1.0, False, False)
        L.device = torch.device("cuda")
        return L
    return make


def test_second_launch_goes_straight_to_the_compiled_kernel(on_gpu):
    L, log = on_gpu(), []
    kernel = FakeKernel("chunk_output", log, L.consts)
    a, b = torch.zeros(8), torch.zeros(8)
    L.run(kernel, (4, 2), [a, b])
    L.run(kernel, (4, 2), [a, b])
    assert [e[0] for e in log] == ["jit", "direct"]
    tail = [dict(L.consts, GATES=0)[n] for n in kernel.arg_names[2:]]
    assert log[1] == ("direct", (4, 2, 1), (a, b, *tail))


def test_new_specialisation_or_grid_goes_through_the_jit(on_gpu):
    L, log = on_gpu(), []
    kernel = FakeKernel("chunk_output", log, L.consts)
    a, b = torch.zeros(8), torch.zeros(8)
    L.run(kernel, (4, 2), [a, b])
    L.run(kernel, (4, 2), [a[1:], b])           # 4 bytes off: Triton specialises on 16-byte alignment
    L.run(kernel, (4, 2), [a.half(), b])        # another pointer dtype
    L.run(kernel, (8, 2), [a, b])               # another grid
    L.run(kernel, (4, 2), [b, a])               # same specialisation, other tensors
    assert [e[0] for e in log] == ["jit", "jit", "jit", "jit", "direct"]
    assert log[-1][2][:2] == (b, a)


def test_gated_kernel_replays_both_passes(on_gpu):
    L, log = on_gpu(), []
    kernel = FakeKernel("gated_kernel", log, L.consts)
    a, b = torch.zeros(8), torch.zeros(8)
    L.run(kernel, (1, 2, 3), [a, b])
    L.run(kernel, (1, 2, 3), [a, b])
    assert [(e[0], e[3] if e[0] == "jit" else None) for e in log[:2]] == [("jit", 1), ("jit", 2)]
    gates_at = 2 + kernel.arg_names[2:].index("GATES")
    assert [(e[0], e[2][gates_at]) for e in log[2:]] == [("direct", 1), ("direct", 2)]


def test_kernel_with_unknown_arguments_stays_on_the_jit(on_gpu):
    L, log = on_gpu(), []
    kernel = FakeKernel("chunk_output", log, L.consts)
    kernel.arg_names.append("not_a_launch_constant")
    a = torch.zeros(8)
    L.run(kernel, (1,), [a, a])
    L.run(kernel, (1,), [a, a])
    assert [e[0] for e in log] == ["jit", "jit"]


def test_launch_is_kept_per_call_shape(on_gpu):
    assert on_gpu(64) is on_gpu(64)
    assert on_gpu(64) is not on_gpu(128)


def test_a_pass_pointer_list_keys_as_a_plain_list(on_gpu):
    """direct.Pointers works its specialisation out once; the key is the same as a plain list's,
    and a misaligned pointer still makes a new one."""
    from flexla.runtime import direct
    L, log = on_gpu(), []
    kernel = FakeKernel("chunk_output", log, L.consts)
    a, b = torch.zeros(8), torch.zeros(8)
    assert direct.key(kernel, (4, 2), direct.Pointers([a, b])) == direct.key(kernel, (4, 2), [a, b])
    L.run(kernel, (4, 2), [a, b])
    L.run(kernel, (4, 2), direct.Pointers([a, b]))
    L.run(kernel, (4, 2), direct.Pointers([a[1:], b]))
    assert [e[0] for e in log] == ["jit", "direct", "jit"]
