"""A key over what the callbacks are made of, computed without tracing them: their bytecode and
constants, their closures' values, default arguments and the globals they name (recursively for
Python helpers). A warm process finds its module through it and skips tracing (the module's own key
hashes the traced graphs, which takes a trace). Anything whose contents this cannot see (an object
of a user-defined class, say) makes the key None, and the caller traces as before: a stale module
is never loaded because a value changed where the key did not look.
"""
from __future__ import annotations

import builtins
import hashlib
import sys
import types

import torch

_SCALARS = (type(None), bool, int, float, complex, str, bytes)
# modules whose functions count as fixed by their version (torch's is part of the key; flexla's
# own code by the compiler fingerprint)
_VERSIONED = ("torch", "flexla", "math", "builtins", "operator", "functools")


def source_key(callbacks: dict) -> str | None:
    h = hashlib.sha256(sys.version.encode())
    for role in sorted(callbacks):
        fn = callbacks[role]
        d = _function(fn, {id(fn)}) if isinstance(fn, types.FunctionType) else None
        if d is None:
            return None
        h.update(f"{role}:{d}".encode())
    return h.hexdigest()


def _versioned(obj) -> bool:
    module = getattr(obj, "__module__", None) or getattr(obj, "__name__", "")
    return (isinstance(module, str) and module.split(".")[0] in _VERSIONED
            and not module.startswith("flexla.variants"))      # shipped variants are user code


def _digest(obj, seen: set) -> str | None:
    if isinstance(obj, _SCALARS):
        return f"{type(obj).__name__}:{obj!r}"
    if isinstance(obj, (tuple, list)):
        parts = [_digest(x, seen) for x in obj]
        return None if None in parts else f"{type(obj).__name__}({','.join(parts)})"
    if isinstance(obj, dict):
        parts = [(repr(k), _digest(v, seen)) for k, v in sorted(obj.items(), key=lambda kv: repr(kv[0]))]
        return None if any(p is None for _, p in parts) else "dict(" + ",".join(f"{k}={v}" for k, v in parts) + ")"
    if isinstance(obj, torch.Tensor):
        try:
            t = obj.detach().cpu().contiguous().reshape(-1)
            data = hashlib.sha256(t.view(torch.uint8).numpy().tobytes()).hexdigest()
        except (RuntimeError, TypeError):      # sparse, meta, ...: contents out of reach
            return None
        return f"tensor:{obj.dtype}:{tuple(obj.shape)}:{data}"
    if isinstance(obj, types.ModuleType):
        return f"module:{obj.__name__}" if _versioned(obj) else None
    if isinstance(obj, (staticmethod, classmethod)):
        return _digest(obj.__func__, seen)
    if isinstance(obj, types.FunctionType):
        if _versioned(obj):
            return f"function:{obj.__module__}.{obj.__qualname__}"
        if id(obj) in seen:                 # recursion: its contents are already in the key
            return f"function:{obj.__qualname__}"
        seen = seen | {id(obj)}
        return _function(obj, seen)
    from .decorator import Variant
    if isinstance(obj, Variant):            # another variant's callbacks reused (retention's intra is simple GLA's)
        parts = [_digest(x, seen) for x in (obj.callbacks, obj.name, obj.chunk_size, obj.schedule, repr(obj.states))]
        return None if None in parts else "variant(" + ",".join(parts) + ")"
    if callable(obj) and _versioned(obj):   # torch ops, builtins, torch classes
        return f"callable:{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', repr(obj))}"
    return None


def _function(fn: types.FunctionType, seen: set) -> str | None:
    code = _code(fn.__code__)
    cells = [_digest(c.cell_contents, seen) for c in (fn.__closure__ or ())]
    defaults = _digest(tuple(fn.__defaults__ or ()), seen)
    kwdefaults = _digest(dict(fn.__kwdefaults__ or {}), seen)
    named = {}
    for name in sorted(_names(fn.__code__)):
        if name in fn.__globals__:
            named[name] = _digest(fn.__globals__[name], seen)
        elif hasattr(builtins, name):
            named[name] = f"builtin:{name}"
    parts = [code, defaults, kwdefaults, *cells, *named.values()]
    if None in parts:
        return None
    return hashlib.sha256("|".join([*parts, *named]).encode()).hexdigest()


def _code(code: types.CodeType) -> str:
    consts = [_code(c) if isinstance(c, types.CodeType) else
              repr(sorted(map(repr, c))) if isinstance(c, frozenset) else repr(c) for c in code.co_consts]
    return hashlib.sha256(repr((code.co_code, consts, code.co_names, code.co_varnames, code.co_freevars,
                                code.co_cellvars)).encode()).hexdigest()


def _names(code: types.CodeType) -> set[str]:
    """Every name the code (and the code it nests) looks up: globals, attributes, builtins."""
    out = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            out |= _names(c)
    return out
