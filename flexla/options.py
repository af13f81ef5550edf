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


def ahead_tiles() -> bool:
    """FLEXLA_AHEAD_TILES=1: loops over chunks load the chunk tiles they only add to matrix products
    one chunk ahead (codegen/kernels._added_to_products). Off until timed on a GPU."""
    return _flag("FLEXLA_AHEAD_TILES")


def move_scales() -> bool:
    """FLEXLA_MOVE_SCALES=1: scalings move off product operands that are otherwise inputs
    (passes/scale_motion.py). Off until timed on a GPU."""
    return _flag("FLEXLA_MOVE_SCALES")


def _flag(name: str) -> bool:
    mode = os.environ.get(name, "0")
    if mode not in ("0", "1"):
        raise ValueError(f"{name} must be 0 or 1, got {mode!r}")
    return mode == "1"


def fingerprint() -> str:
    return f"split_grads={split_grads()},ahead_tiles={int(ahead_tiles())},move_scales={int(move_scales())}"
