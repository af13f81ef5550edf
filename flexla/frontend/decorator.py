"""`flexla.linear_attention`: turns a class of three callbacks into a callable compiled variant."""
from __future__ import annotations

import os
from dataclasses import replace

import torch

from .. import options
from .errors import CallbackError, CallError
from .signature import Extra, candidate_tiles, declared_tiles, extra_names
from .states import parse_states

DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def linear_attention(cls=None, *, chunk_size: int = 64, schedule: str | None = None, name: str | None = None,
                     state="[K, V]"):
    """Decorator: `@flexla.linear_attention(chunk_size=64)` over a class defining intra, update, merge.

    schedule: None (a heuristic picks per call), "fused" or "chunk" to force one.
    state: the shape of the recurrent state, or a tuple of shapes for several states (the [K, V]
    matrix first, then "[K]" or "[V]" vectors); S is then a tuple in update and merge.
    """
    def wrap(c):
        return Variant(c, chunk_size=chunk_size, schedule=schedule, name=name, state=state)
    return wrap(cls) if cls is not None else wrap


def _initial_states(initial_state) -> tuple:
    """A call's initial states as a tuple: none, one tensor, or a tuple of them as given."""
    if initial_state is None:
        return ()
    return tuple(initial_state) if isinstance(initial_state, (tuple, list)) else (initial_state,)


def _signature(q, k, v, extras, initial_state) -> tuple | None:
    """What a call's checks, roles and compiled module depend on: each tensor's shape, dtype and
    device, the compile options and whether kernels are interpreted; None where an input is not a
    tensor (the checks then say what is wrong)."""
    sig = [options.fingerprint(), os.environ.get("TRITON_INTERPRET"), len(extras), initial_state is None,
           isinstance(initial_state, (tuple, list))]
    for x in (q, k, v, *extras, *_initial_states(initial_state)):
        if not isinstance(x, torch.Tensor):
            return None
        sig += (x.shape, x.dtype, x.device)
    return tuple(sig)


class Variant:
    def __init__(self, cls, chunk_size=64, schedule=None, name=None, state="[K, V]"):
        if chunk_size < 16 or chunk_size & (chunk_size - 1):
            raise ValueError(f"chunk_size must be a power of two >= 16, got {chunk_size}")
        if schedule not in (None, "fused", "chunk"):
            raise ValueError(f"schedule must be None, 'fused' or 'chunk', got {schedule!r}")
        self.name = name or cls.__name__
        self.callbacks = {}
        for cb in ("intra", "update", "merge"):
            fn = cls.__dict__.get(cb)
            if fn is None:
                raise CallbackError(cb, None, f"class {cls.__name__} has no `{cb}`",
                                    "define intra(q, k, v, *extras), update(S, c) and merge(S, c)")
            self.callbacks[cb] = fn.__func__ if isinstance(fn, (staticmethod, classmethod)) else fn
        self.chunk_size, self.schedule = chunk_size, schedule
        self.states = parse_states(state)
        self.extra_names = extra_names(self.callbacks["intra"])
        self.declared = declared_tiles(self.callbacks["intra"])
        self.__doc__, self.__module__ = cls.__doc__, cls.__module__
        self._compiled = {}
        self._calls = {}    # _signature -> (roles, compiled): a call like an earlier one skips the checks

    def __repr__(self):
        return f"<flexla variant {self.name}: intra(q, k, v{''.join(', ' + n for n in self.extra_names)})>"

    # -- compilation -------------------------------------------------------------------------------
    def compile(self, extras: list[Extra] | None = None):
        """The compiled module for these extra roles (the declared ones by default)."""
        from ..compiled import load_warm, warm_key
        if extras is None:
            missing = [n for n in self.extra_names if n not in self.declared]
            if missing:
                raise CallError(self.name, f"the tile shapes of {missing} are not declared",
                                "annotate them on intra (e.g. `g: \"[C]\"`) or call the variant once first")
            extras = [Extra(n, self.declared[n]) for n in self.extra_names]
        key = (tuple(extras), options.fingerprint())     # an option changed in-process compiles anew
        if key not in self._compiled:
            # a module on disk from an earlier process is found without importing the compiler
            warm = warm_key(self.name, list(extras), self.states, self.callbacks)
            found = load_warm(warm)
            if found is None:
                from ..compiler import compile_variant
                found = compile_variant(self.name, self.callbacks, list(extras), self.states, warm)
            self._compiled[key] = found
        return self._compiled[key]

    def source(self) -> str:
        """The generated Triton source (forward and backward kernels) of the last compiled signature."""
        compiled = next(reversed(self._compiled.values())) if self._compiled else self.compile()
        return compiled.source

    def source_path(self):
        compiled = next(reversed(self._compiled.values())) if self._compiled else self.compile()
        return compiled.path

    # -- calls -----------------------------------------------------------------------------------
    def __call__(self, q, k, v, *extras, scale=None, initial_state=None, output_final_state=False):
        from ..runtime import launch
        from ..runtime.function import LinearAttentionFunction
        grads = torch.is_grad_enabled() and any(isinstance(x, torch.Tensor) and x.requires_grad
                                                for x in (q, k, v, *_initial_states(initial_state), *extras))
        # which extras' gradients the backward computes: all where no backward will run (one module
        # then serves later calls that train every extra); a non-tensor extra is _check's to report
        wanted = tuple(getattr(e, "requires_grad", True) for e in extras) if grads else None
        sig = _signature(q, k, v, extras, initial_state)
        sig = sig and (sig, wanted)
        found = self._calls.get(sig) if sig is not None else None
        if found is None:
            roles = self._check(q, k, v, extras, initial_state)
            if wanted is not None:
                roles = [replace(r, grad=w) for r, w in zip(roles, wanted)]
            found = roles, self._compile_for(roles, q, k, v, extras)
            if sig is not None:
                if len(self._calls) > 1024:
                    self._calls.clear()
                self._calls[sig] = found
        roles, compiled = found
        K = q.shape[-1]
        scale = K ** -0.5 if scale is None else float(scale)
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        extras = [e.contiguous() for e in extras]
        h0s = [h.to(launch.state_dtype(q)).contiguous() for h in self._as_list(initial_state)] \
            if initial_state is not None else None
        opts = dict(scale=scale, output_final_state=output_final_state, chunk_size=self.chunk_size,
                    schedule=self.schedule, per_token=[r.per_token for r in roles])
        if not grads:
            o, hts, _ = launch.forward(compiled, q, k, v, extras, scale, h0s, output_final_state,
                                       self.chunk_size, self.schedule)
        else:
            o, *hts = LinearAttentionFunction.apply(compiled, opts, q, k, v, *(h0s or [None] * len(self.states)),
                                                    *extras)
        if not output_final_state:
            return o, None
        return o, hts[0] if len(self.states) == 1 else tuple(hts)

    def _as_list(self, initial_state):
        return [initial_state] if len(self.states) == 1 else list(initial_state)

    def _compile_for(self, roles, q, k, v, extras):
        try:
            return self.compile(roles)
        except CallbackError:
            # an extra whose role was guessed (K == V) may be the other feature dim
            alternatives = [r for r in self._alternative_roles(roles, q, v, extras)]
            for alt in alternatives:
                try:
                    return self.compile(alt)
                except CallbackError:
                    pass
            raise

    def _alternative_roles(self, roles, q, v, extras):
        B, T, _, K = q.shape
        H, V = v.shape[2], v.shape[-1]
        for i, (r, x) in enumerate(zip(roles, extras)):
            if r.name in self.declared:
                continue
            for tile in candidate_tiles(self.name, r.name, x, B, T, H, K, V)[1:]:
                yield roles[:i] + [replace(r, tile=tile)] + roles[i + 1:]

    def _check(self, q, k, v, extras, initial_state) -> list[Extra]:
        err = lambda problem, hint: CallError(self.name, problem, hint)
        for n, x in (("q", q), ("k", k), ("v", v)):
            if not isinstance(x, torch.Tensor) or x.dim() != 4:
                raise err(f"{n} must be a 4-D tensor [B, T, H, D], got "
                          f"{list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}",
                          "flexla uses FLA's layout [batch, time, heads, dim]")
        B, T, HQK, K = q.shape
        H, V = v.shape[2], v.shape[-1]
        if tuple(k.shape) != (B, T, HQK, K):
            raise err(f"k has shape {list(k.shape)} but q has {list(q.shape)}", "q and k must have the same shape")
        if tuple(v.shape[:2]) != (B, T) or H % HQK:
            raise err(f"v has shape {list(v.shape)}, which does not match q's [B, T, H] = {[B, T, HQK]}",
                      "v must be [B, T, H, V], with H a multiple of q's and k's heads (grouped heads)")
        if T == 0:
            raise err("the sequence is empty (T = 0)", "pass at least one token")
        if q.dtype not in DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
            raise err(f"q, k, v have dtypes {q.dtype}, {k.dtype}, {v.dtype}",
                      "use one of float32, float16, bfloat16 (or float64, for gradcheck) for all three")
        devices = {x.device for x in (q, k, v, *extras) if isinstance(x, torch.Tensor)}
        if isinstance(initial_state, torch.Tensor):
            devices.add(initial_state.device)
        if len(devices) > 1:
            raise err(f"inputs are on different devices: {sorted(map(str, devices))}", "move them to one device")
        interpreting = os.environ.get("TRITON_INTERPRET") == "1"
        if q.device.type != "cuda" and not interpreting:
            raise err(f"inputs are on {q.device}, and flexla's kernels need a CUDA GPU",
                      "move the tensors to the GPU, or set TRITON_INTERPRET=1 before triton is imported "
                      "to run the kernels on the CPU (slow)")
        if interpreting and q.dtype == torch.bfloat16:
            raise err("bfloat16 under the Triton interpreter", "the interpreter has no bf16: use float32 or float16")
        if len(extras) != len(self.extra_names):
            raise err(f"got {len(extras)} extra inputs, but intra takes {len(self.extra_names)} "
                      f"({', '.join(self.extra_names) or 'none'})", "pass one tensor per extra argument of intra")
        if initial_state is not None:
            if len(self.states) > 1 and (not isinstance(initial_state, (tuple, list))
                                         or len(initial_state) != len(self.states)):
                raise err(f"initial_state must be a tuple of {len(self.states)} tensors (the variant declares "
                          f"{len(self.states)} states)", "pass one initial tensor per state, in declaration order")
            for st, h in zip(self.states, self._as_list(initial_state)):
                want = [B, H, *st.sizes(K, V)]
                if not isinstance(h, torch.Tensor) or list(h.shape) != want:
                    got = list(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
                    raise err(f"initial_state has shape {got}, expected {want}",
                              f"pass the state as [B, H, {', '.join(st.tile)}]")
        roles = []
        for name, x in zip(self.extra_names, extras):
            if not isinstance(x, torch.Tensor):
                raise err(f"extra input `{name}` is a {type(x).__name__}", "pass a tensor")
            if x.dtype not in DTYPES:
                raise err(f"extra input `{name}` has dtype {x.dtype}", "use float32, float16, bfloat16 or float64 "
                          "(extras are read in the compute dtype)")
            tiles = candidate_tiles(self.name, name, x, B, T, H, K, V)
            if name in self.declared:
                if self.declared[name] not in tiles:
                    want = Extra(name, self.declared[name]).call_shape(B, T, H, K, V)
                    raise err(f"extra input `{name}` has shape {list(x.shape)}, but intra declares its tile as "
                              f"[{', '.join(self.declared[name])}], i.e. a call shape [{', '.join(map(str, want))}]",
                              f"pass `{name}` as [{', '.join(map(str, want))}]")
                roles.append(Extra(name, self.declared[name]))
            else:
                roles.append(Extra(name, tiles[0]))
        return roles
