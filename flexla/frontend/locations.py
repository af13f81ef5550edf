"""Remembers which line of which callback produced each traced op, so errors can point at it."""
from __future__ import annotations

import linecache
import sys

import torch.fx.traceback as fx_traceback
from torch.overrides import TorchFunctionMode


class CallbackLocations(TorchFunctionMode):
    """While tracing, tags every op with `callback:line` of the innermost user callback frame."""

    def __init__(self, callbacks: dict):
        super().__init__()
        self.codes = {fn.__code__: name for name, fn in callbacks.items()}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        frame = sys._getframe(1)
        while frame is not None and frame.f_code not in self.codes:
            frame = frame.f_back
        fx_traceback.set_stack_trace([describe(self.codes[frame.f_code], frame.f_code.co_filename,
                                               frame.f_lineno)] if frame else [])
        return func(*args, **(kwargs or {}))


def describe(callback: str, filename: str, lineno: int) -> str:
    text = linecache.getline(filename, lineno).strip()
    return f"{callback}, {filename}:{lineno}: {text}"


def callback_of(loc: str | None) -> str:
    return loc.split(",", 1)[0] if loc else "<the derived backward>"
