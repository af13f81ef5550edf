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
