"""A compiled variant, and how a warm process finds one without tracing: this module imports no
part of the compiler (its IR pulls in sympy, half a second of a warm start), so a process whose
module is already on disk loads it without importing them."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import triton

from . import options
from .codegen import cache
from .frontend.signature import Extra
from .frontend.source_key import source_key
from .frontend.states import State

VERSION = "0.1.0"


@dataclass
class Compiled:
    key: str
    module: object
    path: Path
    meta: dict
    from_cache: bool

    @property
    def source(self) -> str:
        return self.path.read_text()


@lru_cache(maxsize=1)
def compiler_fingerprint() -> str:
    """A hash of flexla's own compiler and templates (not the shipped variants)."""
    root = Path(__file__).parent
    h = hashlib.sha256(VERSION.encode())
    for p in sorted(root.rglob("*")):
        if p.suffix in (".py", ".jinja") and "variants" not in p.parts and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def device_name() -> str:
    import os
    if os.environ.get("TRITON_INTERPRET") == "1" or not torch.cuda.is_available():
        return "interpreter"
    return torch.cuda.get_device_name()


def warm_key(name: str, extras: list[Extra], states: list[State], callbacks: dict) -> str | None:
    """The key a warm process looks its module up by without tracing (None when the callbacks
    reference something source_key cannot see into): the callbacks' contents in place of the
    traced graphs, with everything else cache_key hashes."""
    source = source_key(callbacks)
    if source is None:
        return None
    h = hashlib.sha256(b"warm")
    for part in (compiler_fingerprint(), options.fingerprint(), triton.__version__, torch.__version__, device_name(),
                 name, repr([e.key for e in extras]), repr([(s.name, s.tile) for s in states]), source):
        h.update(part.encode())
    return h.hexdigest()[:32]


def load_warm(warm: str | None) -> Compiled | None:
    """The module a previous process compiled under this warm key, or None (then compile)."""
    key = cache.read_alias(warm) if warm else None
    module = cache.load(key) if key else None
    return None if module is None else Compiled(key, module, cache.path_for(key), module.META, True)
