"""Launching a kernel that already ran once for a Launch straight through its compiled form.

A call of a Triton JIT kernel binds every argument, rebuilds its specialisation key and looks the
compiled kernel up again on every launch: tens of microseconds of host time per launch, times the
5 to 9 kernels of a forward+backward, and the small calls were host-bound (docs/performance.md).
A Launch is kept per call shape (launch.Launch.of), so it can keep its compiled kernels too. Every
argument but the pointers is a constexpr or an int fixed by the Launch; what Triton specialises a
pointer on is its dtype and whether it is 16-byte aligned, so those and the current device make
the key under which a compiled kernel is found again."""
from __future__ import annotations

import torch


class Pointers(list):
    """A pass's pointer arguments, which its kernels share: their specialisation is worked out once
    a pass rather than once a launch (a few microseconds a launch, for twenty-odd pointers)."""
    _spec = None

    def spec(self) -> tuple:
        if self._spec is None:
            self._spec = specialisation(self)
        return self._spec


def specialisation(pointers) -> tuple:
    return tuple([(p.dtype, p.data_ptr() % 16 == 0) for p in pointers])


def key(kernel, grid, pointers) -> tuple:
    spec = pointers.spec() if isinstance(pointers, Pointers) else specialisation(pointers)
    return kernel, grid, torch.cuda.current_device(), spec


def plan(kernel, compiled, args_per_pass: list, n_pointers: int) -> list | None:
    """[(compiled kernel, its arguments after the pointers)] per pass (GATES value), from what the
    JIT launches returned and the keyword arguments each was launched with; None where that is
    not a compiled kernel this module knows how to call (then every launch goes through the JIT)."""
    names = getattr(kernel, "arg_names", None)
    if names is None:
        return None
    out = []
    for ck, args in zip(compiled, args_per_pass):
        if not (hasattr(ck, "run") and hasattr(ck, "function")) or any(n not in args for n in names[n_pointers:]):
            return None
        out.append((ck, [args[n] for n in names[n_pointers:]]))
    return out


def launch(found: list, grid, pointers) -> None:
    grid = (*grid, 1, 1)[:3]
    for ck, tail in found:
        ck[grid](*pointers, *tail)
