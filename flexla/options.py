"""Compile options read from the environment. They change the generated module, so every cache
key (compiler.cache_key, compiled.warm_key) includes them."""
from __future__ import annotations

import os


def split_grads() -> str:
    """FLEXLA_SPLIT_GRADS: auto (default), 0 or 1; see passes/split_by_output.py."""
    mode = os.environ.get("FLEXLA_SPLIT_GRADS", "auto")
    if mode not in ("auto", "0", "1"):
        raise ValueError(f"FLEXLA_SPLIT_GRADS must be auto, 0 or 1, got {mode!r}")
    return mode


def fingerprint() -> str:
    return f"split_grads={split_grads()}"
