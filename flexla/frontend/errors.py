"""The errors flexla raises to its users. Each names what went wrong, where, and what to do."""
from __future__ import annotations


class FlexlaError(Exception):
    """Base class of every error flexla raises on purpose."""


class CallbackError(FlexlaError):
    """Something in a user's callback that flexla cannot compile."""

    def __init__(self, callback: str, where: str | None, problem: str, hint: str):
        self.callback, self.where, self.problem, self.hint = callback, where, problem, hint
        at = f" at {where}" if where else ""
        super().__init__(f"in callback `{callback}`{at}: {problem}\n  what to do: {hint}")


class CallError(FlexlaError, ValueError):
    """Arguments of a call that do not fit the variant (shapes, dtypes, devices)."""

    def __init__(self, variant: str, problem: str, hint: str):
        super().__init__(f"{variant}(...): {problem}\n  what to do: {hint}")


class DoesNotFit(FlexlaError, RuntimeError):
    """A pass whose kernels do not fit the device (shared memory, registers) at any chunk size."""

    def __init__(self, variant: str, direction: str, K: int, V: int, why: str):
        super().__init__(f"{variant} {direction} at head dims K = {K}, V = {V}: {why}, even at chunk 16, the "
                         "smallest\n  what to do: use head dims of 128 or less for this variant's "
                         f"{direction} on this GPU (docs/performance.md lists what runs where)")
