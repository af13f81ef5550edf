"""Launching a compiled module's kernels: buffers, grids, constexprs, schedule choice."""
from __future__ import annotations

import functools
import os
import sys

import torch
import triton
import triton.language as tl
from triton.runtime.errors import OutOfResources

from ..frontend.errors import DoesNotFit
from ..passes.schedule import choose_schedule
from . import direct, precompile, tuning

# FLEXLA_OUTPUT_V_SPLIT forces the output kernel's V split (output_launch), for experiments
OUTPUT_V_SPLIT = os.environ.get("FLEXLA_OUTPUT_V_SPLIT", "auto")
# the narrowest K slice of a state scan split along K (scan_launch); FLEXLA_SCAN_BK sets it
# (experiments, and checks at small K)
SCAN_BK = int(os.environ.get("FLEXLA_SCAN_BK", "64"))
# the narrowest V slice of a state scan that cannot split K (scan_launch): FLA's state kernels
# run in slices of 32 at few heads too; FLEXLA_SCAN_BV sets it (64: never narrower)
SCAN_BV = int(os.environ.get("FLEXLA_SCAN_BV", "32"))
# the widest V slice of a gradient kernel that may split V (grad_launch); FLEXLA_GRAD_MAX_BV sets
# it (checks of the split at small V)
GRAD_MAX_BV = int(os.environ.get("FLEXLA_GRAD_MAX_BV", "128"))
# the most [K, V] state elements a gradient kernel that may split K holds (grad_launch): 64 x 128,
# so K = V = 128 goes in two slices (run 80, H200: GLA's dq/dk/dg 1.48 -> 0.80 ms, RWKV-6's
# fwd+bwd 4.71 -> 3.04 ms; sm_90 spills 1408 -> 0 and 3352 -> 800 bytes a thread);
# FLEXLA_GRAD_MAX_KV sets it (checks of the split at small head dims)
GRAD_MAX_KV = int(os.environ.get("FLEXLA_GRAD_MAX_KV", str(64 * 128)))
# the most [K, V] state elements a gradient kernel that walks V in a loop holds per slice
# (grad_launch): 128 x 128, so only head dims past 128 go in slices (sm_90, the delta rule at
# K = V = 256, chunk 64: 512 KB of shared memory whole, 216 KB in slices of 64; at K = V = 128
# slices of 64 spill more than whole V, 1764 against 1296 bytes a thread, for the sums the loop
# carries); FLEXLA_GRAD_LOOP_KV sets it (checks of the loop at small head dims)
GRAD_LOOP_KV = int(os.environ.get("FLEXLA_GRAD_LOOP_KV", str(128 * 128)))
# K and V tiles (slices included) at least 64 wide, but where both head dims are 16 or less
# (HGRN's K = V = 1): 16- or 32-wide tiles gave wrong gradients or an illegal address on an H200
# (Triton 3.6; the interpreter is exact) next to 64-wide ones, in the delta rules at K = V = 32
# and in KDA at K = V = 16 (runs 66-67 in docs/performance.md); it looks like the Hopper wgmma bug
# of Triton issues #10486 and #11366. Narrower head dims are padded (masked); 16-wide tiles
# multiply on the CUDA cores instead (Launch). FLEXLA_NARROW_TILES=1 allows narrow tiles on the
# tensor cores again (to re-check on a newer Triton; the CPU tests split small head dims with it).
NARROW_TILES = os.environ.get("FLEXLA_NARROW_TILES", "") not in ("", "0")
# where K is wider than 128, the output kernel that walks K in slices of this width
# (chunk_output_k_loop) is among the forward's ways too (forward_ways); FLA's output kernels take
# K in slices of 64
OUTPUT_LOOP_BK = int(os.environ.get("FLEXLA_OUTPUT_LOOP_BK", "64"))
# a prep kernel that walks K (chunk_prep_k_loop, bwd_prep_k_loop: passes/tiling.prep_k_walks) is
# timed against the one holding K whole where K is wider than PREP_K_LOOP_ABOVE, in slices of
# PREP_LOOP_BK (and V too, where it walks V after K: run_prep). FLEXLA_PREP_K_LOOP=1 always takes
# it there, 0 never (A/B timings); -1, the default, searches.
PREP_K_LOOP_ABOVE = int(os.environ.get("FLEXLA_PREP_K_LOOP_ABOVE", "128"))
PREP_K_LOOP = int(os.environ.get("FLEXLA_PREP_K_LOOP", "-1"))
PREP_LOOP_BK = int(os.environ.get("FLEXLA_PREP_LOOP_BK", "64"))
# a gradient kernel that has two phases on slices of K (the compiler's k_phase_grads,
# passes/tiling.k_phases: KDA's) runs as those where K is wider than this: whole, its V loop
# carries [C, K] sums of K = 256 (sm_90: 13 KB of spills a thread); FLEXLA_GRAD_K_PHASES_ABOVE
# sets it (0: always, for checks at small head dims)
GRAD_K_PHASES_ABOVE = int(os.environ.get("FLEXLA_GRAD_K_PHASES_ABOVE", "128"))
# the widest V slice of those phases' loop over V (grad_launch); FLEXLA_GRAD_PHASE_BV sets it
GRAD_PHASE_BV = int(os.environ.get("FLEXLA_GRAD_PHASE_BV", "64"))
# whether a forward that autograd will differentiate keeps its chunk states for the backward
# (KeptStates); FLEXLA_KEEP_STATES=0 recomputes them there instead, holding less memory between
# the two passes
KEEP_STATES = os.environ.get("FLEXLA_KEEP_STATES", "1") != "0"
DOT_DTYPES = {torch.bfloat16: tl.bfloat16, torch.float16: tl.float16, torch.float32: tl.float32,
              torch.float64: tl.float64}


def block_sizes(C: int, K: int, V: int, v_split: bool, max_bv: int = 64, max_bk: int | None = None,
                narrow_v: bool = False) -> dict:
    """Tiles of a launch: V whole or (where the compiler found V separable, passes/tiling.py) in
    slices of at most max_bv; K whole, or for a state scan split along K, in slices of max_bk;
    none narrower than 64 unless both are 16 wide (NARROW_TILES), or V in a scan (narrow_v)."""
    BK, BV = max(16, tuning.pow2(K)), max(16, tuning.pow2(V))
    if v_split:
        BV = min(BV, max_bv)
    if max_bk:
        BK = min(BK, max(16, max_bk))
    if not NARROW_TILES and max(BK, BV) > 16:
        BK, BV = max(64, BK), BV if narrow_v else max(64, BV)
    return {"BC": C, "BK": BK, "BV": BV, "NK": tuning.cdiv(K, BK), "NV": tuning.cdiv(V, BV)}


# FLEXLA_POISON=1 fills outputs with NaN before each launch, so unwritten elements show (the tests
# set it before importing flexla); read once, as every variable here: a call's host time counts
POISON = os.environ.get("FLEXLA_POISON", "") not in ("", "0")


def _empty(*shape, dtype, device):
    x = torch.empty(*shape, dtype=dtype, device=device)
    return x.fill_(float("nan")) if POISON else x


@functools.lru_cache(maxsize=None)
def _properties(device):
    """Cached: torch builds a new properties object per call, tens of microseconds on every launch."""
    return torch.cuda.get_device_properties(device)


def sm_count(device) -> int:
    return _properties(device).multi_processor_count if device.type == "cuda" else 1


def device_name(device) -> str:
    return _properties(device).name if device.type == "cuda" else device.type


def state_sizes(tile, K: int, V: int) -> tuple:
    """A state's sizes from its tile, e.g. ("K", "V") -> (K, V)."""
    return tuple({"K": K, "V": V}[d] for d in tile)


def state_dtype(x):
    """States and accumulators are float32 (float64 for float64 inputs, used by gradcheck)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def between_kernels(x, in_input_dtype: bool):
    """The dtype of a state stored by one kernel for another: the input dtype where every reader
    casts it to that anyway (compiler meta), halving the traffic in bf16; else the state dtype."""
    return x.dtype if in_input_dtype else state_dtype(x)


class Launch:
    """Sizes and constexprs shared by every kernel of one call, and (on the GPU) the compiled
    kernels it launched (runtime/direct.py). Made by Launch.of, which keeps one per call shape."""
    KEPT = 256                  # Launches kept (the oldest goes first)
    _kept: dict = {}

    @classmethod
    def of(cls, meta, q, v, chunk_size, scale, use_h0, use_ht, v_split=None, k_split=None, max_bv=64,
           narrow_v=False) -> "Launch":
        key = (id(meta), tuple(q.shape), tuple(v.shape[2:]), q.dtype, q.device, chunk_size, float(scale),
               bool(use_h0), bool(use_ht), v_split, k_split, max_bv, narrow_v)
        found = cls._kept.get(key)
        if found is None:
            if len(cls._kept) >= cls.KEPT:
                cls._kept.pop(next(iter(cls._kept)))
            found = cls._kept[key] = cls(meta, q, v, chunk_size, scale, use_h0, use_ht, v_split, k_split, max_bv,
                                         narrow_v)
        return found

    def __init__(self, meta, q, v, chunk_size, scale, use_h0, use_ht, v_split=None, k_split=None, max_bv=64,
                 narrow_v=False):
        self.meta = meta        # held, so that id(meta) in Launch.of's key stays this meta's
        self.variant, self.device = meta["variant"], q.device
        self.kernels: dict = {}
        self.forms: dict = {}   # per prep kernel, the form run_prep's search took at this launch's shape
        self.gated = set(meta["gated_kernels"])
        self.B, self.T, HQK, self.K = q.shape
        self.H, self.V = v.shape[2], v.shape[-1]          # q and k may have fewer heads (GQA)
        split = meta["v_split"] if v_split is None else v_split
        bs = block_sizes(chunk_size, self.K, self.V, split, max_bv, max_bk=k_split,   # k_split: the K slice, if any
                         narrow_v=narrow_v)
        self.NK, self.NV, self.NT = bs.pop("NK"), bs.pop("NV"), tuning.cdiv(self.T, chunk_size)
        # 16-wide tiles (both head dims 16 or less: block_sizes) multiply in fp32 on the CUDA cores
        # ("ieee"), away from the tensor-core path that failed at narrow tiles (NARROW_TILES)
        cuda_cores = bs["BK"] < 64 and bs["BV"] < 64 and not NARROW_TILES and q.dtype != torch.float64
        dtype = torch.float32 if cuda_cores else q.dtype
        self.consts = dict(
            scale=float(scale), T=self.T, H=self.H, G=self.H // HQK, NT=self.NT, K=self.K, V=self.V, **bs,
            MASK_C=self.T % chunk_size != 0, MASK_K=self.K % bs["BK"] != 0, MASK_V=self.V % bs["BV"] != 0,
            USE_H0=use_h0, USE_HT=use_ht, GATES=0, DOT_DTYPE=DOT_DTYPES[dtype],
            DOT_PRECISION="ieee" if dtype in (torch.float32, torch.float64) else "tf32",
            # operands of products of exp-rescaled rows (gated scores): bf16 keeps fp32's range
            EXP_DTYPE=tl.bfloat16 if dtype == torch.bfloat16 else tl.float64 if dtype == torch.float64
            else tl.float32,
            ACC=tl.float64 if dtype == torch.float64 else tl.float32)


    def run(self, kernel, grid, pointers):
        """Launch with the kernel's tuned config (runtime/tuning.py; the first candidate off the GPU).
        A per-chunk kernel with gated products runs twice: its fast pass, then its fix-up pass on
        the chunks the fast pass flagged (the gated helpers in templates/module.py.jinja). On the
        GPU the compiled kernels of a first launch are kept, and later launches with the same
        grid and pointer specialisation call them directly (runtime/direct.py)."""
        name = kernel.__name__
        on_gpu = self.device.type == "cuda"
        dry = precompile.recording()        # a dry run (runtime/precompile.py): note, do not launch
        if on_gpu and not dry:
            found_key = direct.key(kernel, grid, pointers)
            found = self.kernels.get(found_key)
            if found is not None:
                return direct.launch(found, grid, pointers)
        passes = (1, 2) if name in self.gated else (0,)
        key = None if not on_gpu else "|".join(
            [device_name(self.device), triton.__version__, kernel.fn.__module__, name,
             tuning.bucket(name, self.consts, grid)])
        # the fix-up pass is not tuned: it has one config whatever the fast pass's (see tuning.fix_up_config)
        fix_up = [(tuning.fix_up_config(name, self.consts), gates) for gates in passes[1:]]
        compiles = [(cfg, passes[0]) for cfg in tuning.to_compile(name, key, self.consts)] + fix_up
        if dry:
            return precompile.record(kernel, grid, pointers, self.consts, compiles)
        args = lambda cfg, gates: dict(self.consts, GATES=gates, **tuning.knobs(cfg))
        launch = lambda cfg, gates=passes[0]: kernel[grid](*pointers, **args(cfg, gates),
                                                           num_warps=cfg[0], num_stages=cfg[1])
        precompile.precompile(kernel, grid, pointers, self.consts, compiles)
        cfg = tuning.choose(name, key, launch, self.consts, label=f"{self.variant} ")
        launched = [(launch(cfg), cfg, passes[0])] + [self._fix_up(launch, c, cfg, gates) for c, gates in fix_up]
        if on_gpu:
            found = direct.plan(kernel, [ck for ck, _, _ in launched], [args(c, g) for _, c, g in launched],
                                len(pointers))
            if found is not None:
                self.kernels[found_key] = found

    @staticmethod
    def _fix_up(launch, cfg, fast_cfg, gates):
        """(compiled kernel, config, GATES) of the fix-up pass in its own config, or where that does
        not fit (more warps can take more shared memory) in the fast pass's."""
        try:
            return launch(cfg, gates), cfg, gates
        except tuning.CANNOT_RUN:
            return launch(fast_cfg, gates), fast_cfg, gates


# (variant, pass, module key, K, V, dtype, device, asked-for chunk) -> the chunk whose kernels last fitted
_FITTING_CHUNK: dict = {}


def with_fitting_chunk(run, key, chunk_size):
    """run(chunk) at the largest power-of-two chunk <= chunk_size whose kernels fit in the device's
    shared memory. Triton only knows a kernel's footprint once compiled for the device (e.g. KDA's
    backward at K = V = 128 needs 272 KB at chunk 64, over an H200's 227 KB), so a launch that does
    not fit is retried at half the chunk: the result is the same, only the tiling changes; so is one
    that ptxas cannot build (register pressure). The chunk that fitted is remembered per key and
    asked-for chunk (the backward asks for two when it searches its chunk), so later calls go
    straight to it."""
    key = (*key, chunk_size)
    chunk = min(chunk_size, _FITTING_CHUNK.get(key, chunk_size))
    while True:
        try:
            out = run(chunk)
        except tuning.CANNOT_RUN as e:
            why = (f"needs {e.required} bytes of shared memory at chunk {chunk} (the device has {e.limit})"
                   if isinstance(e, OutOfResources) else f"does not build at chunk {chunk} ({e})")
            if chunk <= 16:
                raise DoesNotFit(key[0], key[1], key[3], key[4], why) from e
            print(f"flexla: {key[0]} {key[1]} {why}; using chunk {chunk // 2}", file=sys.stderr)
            chunk //= 2
            continue
        _FITTING_CHUNK[key] = chunk
        return out


class KeptStates:
    """What a chunk-parallel forward hands its backward so that the backward need not run the
    forward's scan again: the states entering every chunk, and the chunk tensors that scan writes
    and the backward's kernels read (partition.written_by_scan, e.g. the delta rules' u - w S), by
    their place among the backward's staged tensors. Only where the backward holds its states in
    the same dtype as the forward (compiler meta `states_in_input_dtype`), and only at the
    forward's chunk: the backward's chunk search may choose another, and then recomputes. FLA
    recomputes instead; keeping costs the states' memory ([B*H, NT, K, V] per state, in the input
    dtype) from the forward to the backward, which the recompute allocates anyway."""

    def __init__(self, chunk_size: int, states: list, scan_written: dict):
        self.chunk_size, self.states, self.scan_written = chunk_size, states, scan_written

    def tensors(self) -> list:
        return [*self.states, *self.scan_written.values()]

    def layout(self) -> tuple:
        """Everything but the tensors: with tensors() it makes the KeptStates again (rebuilt), so
        that autograd can hold the tensors themselves (save_for_backward)."""
        return self.chunk_size, len(self.states), list(self.scan_written)

    @staticmethod
    def rebuilt(layout: tuple, tensors: list) -> KeptStates:
        chunk_size, n, slots = layout
        return KeptStates(chunk_size, list(tensors[:n]), dict(zip(slots, tensors[n:])))


def keeps_states(meta) -> bool:
    return KEEP_STATES and meta["states_in_input_dtype"] == meta["bwd_states_in_input_dtype"]


def forward(compiled, q, k, v, extras, scale, h0s, want_ht, chunk_size, schedule=None, keep=False,
            per_token=None):
    """o, the final states (a list, or None) and, where `keep` (autograd will differentiate) and
    the forward ran chunk-parallel, a KeptStates for the backward (else None). h0s: one initial
    state per declared state, or None.
    The first call at a shape compiles its kernels ahead, all at once (runtime/precompile.py), and
    where `keep` those of the backward that will follow too (its dry runs, `per_token` as the
    backward gets it): compiled together, the two passes' compiles overlap instead of adding up. On
    the GPU the chunk-parallel forward times the variant's chunk and half of it on the first call
    per shape bucket (chunk_search): a chunk that fits is not always the faster one (RWKV-6's
    output kernel at K = V = 256 on an H200: 0.41 ms at chunk 64, 0.25 at 32)."""
    def at(way):
        # an int: remembered before the split; a pair: before the K loop
        chunk, output_split, k_loop = (*way, False, False)[:3] if isinstance(way, tuple) else (way, None, False)
        return with_fitting_chunk(lambda c: _forward(compiled, q, k, v, extras, scale, h0s, want_ht, c, schedule,
                                                     output_split, keep, k_loop),
                                  fit_key(compiled, "forward", q, v), chunk)
    ways = forward_ways(compiled.meta, q, v, chunk_size, schedule)
    backward_dry_run = (lambda: _backward_dry_run(compiled, q, k, v, extras, scale, h0s, want_ht, chunk_size,
                                                  per_token, schedule)) if keep else None
    return chunk_search(compiled, q, v, chunk_size, "forward", ways, at,
                        pass_key(compiled, "forward", q, v, chunk_size, schedule, h0s, want_ht, keep),
                        name_of=lambda w: f"{w[0]}" + (" V split" if w[1] else "") + (" K loop" if w[2:] else ""),
                        unit="chunk, output kernel", also=backward_dry_run)


def forward_ways(meta, q, v, chunk_size, schedule) -> list:
    """The (chunk, output kernel's V split) pairs the forward times: the variant's chunk, half of it
    and twice it, the split left to output_launch (None); where V is wider than 128 and the variant's forward
    splits V at all (meta v_split), also each with the split (True). There the whole-V output
    kernel spills, yet each V slice recomputes the chunk's scores, so which wins depends on the
    variant (run 127, H200, (2, 4096, 8, 256), chunk 64: the delta rule's output kernel 0.214 ms
    whole, 0.148 split; KDA's 0.348 whole, 0.492 split). Twice the chunk halves the chunk states
    written and read and the steps of a scan that few heads leave latency-bound (run 156: linear
    attention's forward 15-21% faster at 16 heads); it comes last, so FLEXLA_TUNE=last checks it.
    Not where the forward stages matrix tiles per chunk (stages_matrices). Where K is wider than
    128 and the variant has an output kernel that walks K (passes/tiling.k_loop), each way again
    with that kernel, last: (chunk, split, True)."""
    if not searches_chunk(q, v, chunk_size, schedule):
        return [(chunk_size, None)]
    chunks = [chunk_size, chunk_size // 2] + ([] if stages_matrices(meta) else [chunk_size * 2])
    ways = [(c, None) for c in chunks] + [(c, True) for c in chunks if meta["v_split"] and v.shape[-1] > 128]
    if q.shape[-1] > 128 and "chunk_output_k_loop" in meta.get("kernels", ()):
        ways += [(c, split, True) for c, split in ways]
    return ways


def stages_matrices(meta) -> bool:
    """Whether the forward stages [C, K]-like tiles per chunk (the delta rules', KDA's, GLA's,
    RWKV-6's), which at twice the chunk hold twice the registers: run 156 (H200, 16 heads, D = 128)
    found the delta rules' and KDA's kernels too big at chunk 128 and GLA's and RWKV-6's forward
    16-28% slower there, and the extra way cost KDA's cold forward 8-11 -> 28 s of compiling."""
    return any(len(dims) == 2 for _, dims, _ in meta["staged"])


def searches_chunk(q, v, chunk_size, schedule) -> bool:
    """Whether a pass times its chunk against half of it: on the GPU, for the chunk-parallel
    schedule (a fused one keeps the variant's chunk)."""
    B, T, H = v.shape[:3]
    fused = choose_schedule(B, H, tuning.cdiv(T, chunk_size), 1, sm_count(q.device), schedule) == "fused"
    return q.device.type == "cuda" and chunk_size >= 32 and not fused


def chunk_search(compiled, q, v, chunk_size, direction: str, ways: list, at, key_of_pass: tuple, name_of=None,
                 unit="chunk", also=None):
    """at(the fastest of ways), timed once per device, module, shape bucket and list of ways and
    then remembered (runtime/tuning.search), where there are several ways; each way's kernels
    compiled ahead, all at once (runtime/precompile.py), with those `also` (a dry run of another
    pass) records. The way a pass at one call shape took is kept in-process (_CHOSEN), so a later
    call skips the search's keys and lookups."""
    chosen = (key_of_pass, tuning.tune_mode()) if len(ways) > 1 else None
    if chosen in _CHOSEN:
        return at(_CHOSEN[chosen])
    key = _search_key(compiled, q, v, chunk_size, direction, ways)
    what = f"{compiled.meta['variant']} {direction}" + (" (and the backward)" if also else "")
    if q.device.type == "cuda":
        will_run = tuning.to_search(key, ways) if key else ways
        precompile.ahead_of_time(key_of_pass, [lambda way=way: at(way) for way in will_run] + ([also] if also else []),
                                 what)
    if key is None:
        return at(ways[0])
    way = tuning.search(key, ways, at, what=what, unit=unit, name_of=name_of)
    out = at(way)
    if len(_CHOSEN) > 4096:
        _CHOSEN.clear()
    _CHOSEN[chosen] = way
    return out


_CHOSEN: dict = {}      # (pass_key, FLEXLA_TUNE) -> the way chunk_search took


def _search_key(compiled, q, v, chunk_size, direction: str, ways: list) -> str | None:
    """The tuning cache's key of a pass's search among `ways` (None where there is one way)."""
    B, T, H = v.shape[:3]
    return None if len(ways) == 1 else "|".join(
        [device_name(q.device), triton.__version__, compiled.key, f"{direction} chunk", repr(ways),
         tuning.pass_bucket(q.shape[-1], v.shape[-1], q.dtype, B * H, tuning.cdiv(T, chunk_size))])


def pass_key(compiled, direction: str, q, v, *rest) -> tuple:
    """A pass at one call shape: what its dry run (runtime/precompile.py) is done once for."""
    return (compiled.key, direction, tuple(q.shape), tuple(v.shape), q.dtype, q.device,
            *(x if isinstance(x, (int, str, type(None))) else True for x in rest))   # tensors: given or not


def fit_key(compiled, direction: str, q, v) -> tuple:
    return compiled.meta["variant"], direction, compiled.key, q.shape[-1], v.shape[-1], q.dtype, q.device.type


def _forward(compiled, q, k, v, extras, scale, h0s, want_ht, chunk_size, schedule, output_split=None, keep=False,
             k_loop=False):
    meta, mod = compiled.meta, compiled.module
    L = Launch.of(meta, q, v, chunk_size, scale, h0s is not None, want_ht)
    B, T, H, K, V, NT, NV = L.B, L.T, L.H, L.K, L.V, L.NT, L.NV
    tiles = meta["states"]
    size = lambda tile: state_sizes(tile, K, V)
    o = _empty(B, T, H, V, dtype=v.dtype, device=v.device)
    hts = [_empty(B, H, *size(t), dtype=state_dtype(q), device=v.device) for t in tiles] if want_ht else None
    sched = choose_schedule(B, H, NT, NV, sm_count(q.device), schedule)
    states = [_empty(B * H, NT, *size(t), dtype=between_kernels(q, low), device=v.device) if sched == "chunk" else q
              for t, low in zip(tiles, meta["states_in_input_dtype"])]
    per_state = [x for i in range(len(tiles)) for x in (h0s[i] if h0s is not None else q,
                                                        hts[i] if hts is not None else q, states[i])]
    staged = staged_buffers(meta["staged"], L, q, chunk_size) if sched == "chunk" else [q] * len(meta["staged"])
    flags = gate_flags(compiled, L, ["chunk_prep", "chunk_output"] if sched == "chunk" else [])
    ptrs = direct.Pointers([q, k, v, *extras, o, *per_state, *staged, flags])
    if sched == "fused":
        L.run(mod.fused_fwd, (NV, B * H), ptrs)
    else:
        scan_states(compiled, q, v, chunk_size, scale, L, ptrs, has_prep(meta))
        out = output_launch(compiled, q, v, chunk_size, scale, L, sm_count(q.device), output_split, k_loop)
        out.run(mod.chunk_output_k_loop if k_loop else mod.chunk_output, (NT, out.NV, B * H), ptrs)
    kept = None
    if keep and sched == "chunk" and keeps_states(meta):
        slots = meta["bwd_stages_forward"]     # empty: the backward reads nothing the forward staged
        kept = KeptStates(chunk_size, states, {slots[i]: staged[i] for i, (name, _, _) in enumerate(meta["staged"])
                                               if slots and name in meta["scan_staged"] and slots[i] is not None})
    return o, hts, kept


def output_launch(compiled, q, v, chunk_size, scale, L: Launch, sms: int, split=None, k_loop=False) -> Launch:
    """The per-chunk output kernel splits V where the forward's search chose so (split True, see
    forward_ways), or, by rule (None), only when its chunks alone leave the GPU idle (fewer than
    two programs per SM): each V slice recomputes the chunk's V-free work (its scores), which a
    split pays NV times. FLEXLA_OUTPUT_V_SPLIT=0/1 forces it (tuning experiments). The output
    kernel that walks K (`k_loop`) takes it in slices of OUTPUT_LOOP_BK."""
    split = {"0": False, "1": True}.get(OUTPUT_V_SPLIT, split if split is not None else L.NT * L.B * L.H < 2 * sms)
    if k_loop:
        return Launch.of(compiled.meta, q, v, chunk_size, scale, L.consts["USE_H0"], L.consts["USE_HT"],
                         v_split=bool(split) and compiled.meta["v_split"], k_split=min(OUTPUT_LOOP_BK, L.consts["BK"]))
    return L if split else whole_v(compiled, q, v, chunk_size, scale, L)


def grad_launch(compiled, q, v, chunk_size, scale, L: Launch, name: str) -> Launch:
    """A per-chunk gradient kernel keeps K and V whole, except
    - one that mixes no lanes along V (the compiler's v_split_grads: a split kernel computing dv
      alone) when V is wider than GRAD_MAX_BV: then each program takes a slice of V. Whole V tiles
      of 256 did not fit in an H200's shared memory at any chunk (retention's and simple GLA's dv
      kernel: 270 KB at chunk 16, sm_90);
    - one that may run on slices of K (k_split_grads, passes/tiling.k_slices: GLA's dq/dk/dg,
      each key column apart; retention's dq/dk/d_gamma, whose d_gamma each slice adds a part of,
      k_part_buffers) when its [K, V] state tiles hold more than GRAD_MAX_KV elements: then each
      program takes a slice of K (V stays whole: such a kernel sums over V), at most
      GRAD_MAX_KV / V wide (a power of two, at least 64 on the GPU). GLA's dq/dk/dg kernel at
      K = V = 256 holds two 256 x 256 states otherwise, and spills registers at K = V = 128;
    - and one that walks V in a loop (v_loop_grads, passes/tiling.v_loop: the delta rules',
      KDA's and mLSTM's kernels, or one split along K whose K slice is still too big) takes V in
      slices of at most GRAD_LOOP_KV / BK, one after another in each program (the grid does not
      split V)."""
    meta = compiled.meta
    use_h0, use_ht = L.consts["USE_H0"], L.consts["USE_HT"]
    if name in meta["v_split_grads"] and L.V > GRAD_MAX_BV:
        return Launch.of(meta, q, v, chunk_size, scale, use_h0, use_ht, v_split=True, max_bv=GRAD_MAX_BV)
    bk, bv = L.consts["BK"], L.consts["BV"]
    if name in meta["k_split_grads"]:
        while bk > 16 and bk * bv > GRAD_MAX_KV:    # halved as the scans' slices are; block_sizes keeps >= 64
            bk //= 2
    if name in meta["v_loop_grads"]:               # then V in slices of bv, one after another
        while bv > 16 and max(bk, 16 if NARROW_TILES else 64) * bv > GRAD_LOOP_KV:
            bv //= 2
        if any(name in phases for phases in meta["k_phase_grads"].values()):
            # besides [C, BK] sums, a phase carries [C, C] ones through its V loop (sm_90, KDA at
            # K = V = 256, chunk 64, 8 warps, K slices of 64: spills 20 / 400 bytes a thread at
            # V slices of 64, 324 / 580 at 128, 920 / 1372 at 256)
            bv = min(bv, GRAD_PHASE_BV)
    if (bk, bv) == (L.consts["BK"], L.consts["BV"]):
        return L
    return Launch.of(meta, q, v, chunk_size, scale, use_h0, use_ht, v_split=bv < L.consts["BV"], max_bv=bv,
                     k_split=bk if bk < L.consts["BK"] else None)


def k_part_buffers(compiled, name: str, NK: int, dextras) -> dict:
    """For a gradient kernel run on NK > 1 slices of K, a buffer per extra's gradient that each
    slice only adds a part of (the compiler's k_part_grads: retention's d_gamma sums over K), by
    its index in dextras: [B, T or NT, H, NK, *feature], one slot per slice, summed after."""
    extras = [e for e, _ in compiled.meta["extras"]]
    parts = [extras.index(e) for e in compiled.meta["k_part_grads"].get(name, [])] if NK > 1 else []
    return {i: _empty(*dextras[i].shape[:3], NK, *dextras[i].shape[3:], dtype=dextras[i].dtype,
                      device=dextras[i].device) for i in parts}


def handed_parts(compiled, name: str, grad: Launch, staged: list) -> dict:
    """For the first phase of a gradient kernel on slices of K (k_phase_grads), a buffer per staged
    tile it hands on, by its index among the staged: [B*H, NT, NK, *tile], one part per slice,
    summed after into the staged tile the second phase reads."""
    meta = compiled.meta
    first = [ks[0] for ks in meta["k_phase_grads"].values()]
    if name not in first:
        return {}
    writes = meta["k_phase_handed"]
    return {i: _empty(*staged[i].shape[:2], grad.NK, *staged[i].shape[2:], dtype=staged[i].dtype,
                      device=staged[i].device) for i, (n, _, _) in enumerate(meta["bwd_staged"]) if n in writes}


def staged_buffers(entries, L: Launch, q, chunk_size, unused=()):
    """One buffer per staged chunk tensor (compiler meta): [B*H, NT, *tile], C rows padded; q
    stands in for the `unused` (no kernel this call launches touches them)."""
    sizes = {"C": chunk_size, "K": L.K, "V": L.V}
    return [_empty(L.B * L.H, L.NT, *(sizes[d] for d in dims), dtype=between_kernels(q, low), device=q.device)
            if name not in unused else q for name, dims, low in entries]


def gate_flags(compiled, L: Launch, kernels):
    """The chunks a fast pass found to need the gated helpers' blocked path, one int32 per chunk
    (zeroed; only written where a gate moves by more than e^80 inside a chunk). Only where one of
    `kernels`, those the pass launches, is gated: otherwise no kernel reads it."""
    if not set(kernels) & set(compiled.meta["gated_kernels"]):
        return torch.empty(1, dtype=torch.int32, device=L.device)
    return torch.zeros(L.B * L.H * L.NT, dtype=torch.int32, device=L.device)


def whole_v(compiled, q, v, chunk_size, scale, L: Launch) -> Launch:
    """L with all of V in one program: prep kernels (their tiles are stored whole) and an output
    kernel that should not split V. L itself where it has one V slice (no lookup on every call)."""
    if L.NV == 1:
        return L
    return Launch.of(compiled.meta, q, v, chunk_size, scale, L.consts["USE_H0"], L.consts["USE_HT"], v_split=False)


def state_buffers(compiled, q, v, chunk_size) -> list:
    """Room for the states entering every chunk, [B*H, NT, *state] each (the backward's recompute)."""
    (B, T, _, K), (H, V) = q.shape, v.shape[2:]
    return [_empty(B * H, tuning.cdiv(T, chunk_size), *state_sizes(t, K, V), dtype=between_kernels(q, low),
                   device=v.device) for t, low in zip(compiled.meta["states"], compiled.meta["bwd_states_in_input_dtype"])]


def chunk_states(compiled, q, k, v, extras, scale, h0s, chunk_size, states, staged=None):
    """Writes into `states` the states entering every chunk (recomputed for the backward).
    `staged`: the forward scan's staged tensors, already written (by the backward's prep kernel,
    passes/forward_staged.py); otherwise the forward's prep kernel writes them first."""
    meta = compiled.meta
    L = Launch.of(meta, q, v, chunk_size, scale, h0s is not None, False)
    per_state = [x for i, st in enumerate(states) for x in (h0s[i] if h0s is not None else q, q, st)]
    prep = staged is None and has_prep(meta)
    if staged is None:
        staged = staged_buffers(meta["staged"], L, q, chunk_size)
    else:       # None: room for what the scan writes (partition.written_by_scan) and no one reads;
        # q for what only the output kernel reads (the scan does not touch it)
        staged = [s if s is not None else staged_buffers([e], L, q, chunk_size, meta["output_staged"])[0]
                  for s, e in zip(staged, meta["staged"])]
    ptrs = direct.Pointers([q, k, v, *extras, q, *per_state, *staged,
                            gate_flags(compiled, L, ["chunk_prep"] if prep else [])])
    scan_states(compiled, q, v, chunk_size, scale, L, ptrs, prep)


def has_prep(meta) -> bool:
    """Whether the forward has a prep kernel: it stages what its scan does not write."""
    return len(meta["staged"]) > len(meta["scan_staged"])


def run_prep(compiled, q, v, chunk_size, scale, L: Launch, name: str, ptrs):
    """A prep kernel, with all of V in one program (its tiles are stored whole). Where K is wider
    than PREP_K_LOOP_ABOVE and it has a form walking K (`<name>_k_loop`), the faster of the two,
    timed once per device, module and shape bucket (runtime/tuning.search): H200, (2, 4096, 8, 256),
    run 186, flexla alone: KDA's forward 0.633 -> 0.588 ms and forward + backward 3.52 -> 2.97 with
    it (its whole preps spill 2.7 and 6.0 KB a thread at 4 warps on sm_90), while the delta rules'
    were 1-3% slower (theirs do not spill at 8 warps); walking V too (run 188), the delta rules'
    backward preps won (0.184 -> 0.158 ms, 0.257 -> 0.183), their forward preps still did not."""
    walking = f"{name}_k_loop"
    forms = [name] + [walking] * (L.K > PREP_K_LOOP_ABOVE and walking in compiled.meta["kernels"] and PREP_K_LOOP != 0)
    if PREP_K_LOOP == 1:
        forms = forms[-1:]

    def launch_form(form):
        walks_v = form in compiled.meta["prep_walks_v"]
        prep = whole_v(compiled, q, v, chunk_size, scale, L) if form == name else Launch.of(
            compiled.meta, q, v, chunk_size, scale, L.consts["USE_H0"], L.consts["USE_HT"], v_split=walks_v,
            k_split=min(PREP_LOOP_BK, L.consts["BK"]), max_bv=PREP_LOOP_BK if walks_v else 64)
        prep.run(getattr(compiled.module, form), (L.NT, 1, L.B * L.H), ptrs)
    if len(forms) == 1:
        return launch_form(forms[0])
    if (name, tuning.tune_mode()) in L.forms:
        return launch_form(L.forms[name, tuning.tune_mode()])
    key = None if q.device.type != "cuda" else "|".join(
        [device_name(q.device), triton.__version__, compiled.key, f"{name} walking K",
         tuning.bucket(name, L.consts, (L.NT, 1, L.B * L.H))])
    if precompile.recording():        # a dry run: note the launches of each form the search will time
        for form in tuning.to_search(key, forms):
            launch_form(form)
        return
    form = L.forms[name, tuning.tune_mode()] = tuning.search(key, forms, launch_form, unit="K whole or walked",
                                                             what=f"{compiled.meta['variant']} {name}")
    launch_form(form)


def scan_states(compiled, q, v, chunk_size, scale, L: Launch, ptrs, prep: bool):
    """The chunk-parallel prep kernel (when `prep`: it has tensors to stage and they are not
    written yet), then the sequential state scan."""
    if prep:
        run_prep(compiled, q, v, chunk_size, scale, L, "chunk_prep", ptrs)
    scan = scan_launch(compiled, q, v, chunk_size, scale, L.consts["USE_H0"], L.consts["USE_HT"], "forward")
    scan.run(compiled.module.chunk_states, (scan.NK * scan.NV, L.B * L.H), ptrs)


def scan_launch(compiled, q, v, chunk_size, scale, use_h0, use_ht, direction: str) -> Launch:
    """A state scan's launch. Its programs walk every chunk in order, one per (batch*head, V
    slice), so with a long sequence and few heads they leave most of the GPU idle and each step's
    latency adds up; where the compiler found the scan separable along K (passes/tiling.py), K is
    then split too, into the fewest slices (down to SCAN_BK wide) that give every SM a program:
    more programs, each with a smaller step (FLA's state kernels tile K and V in 64s). Slices of 32
    passed the GPU check and were 1-2% slower than 64 in the forward of six such ops at (2, 8192)
    and (1, 32768) with 16 heads (run 181, H200, bench/ab_launch.py --knob SCAN_BK). A scan that cannot split K
    (the delta rules', KDA's) narrows its V slices the same way instead, down to SCAN_BV (32, as
    FLA's do at few heads): run 145 (H200), the delta rule at (1, 32768, 16, 128) 1.36 -> 1.12 ms
    forward, 6.19 -> 5.33 fwd+bwd. Such slices are narrower than the 64 other kernels keep
    (block_sizes), so their scans search other configs (tuning.candidates)."""
    meta, bwd = compiled.meta, direction == "backward"
    v_split = meta["bwd_v_split"] if bwd else meta["v_split"]
    L = Launch.of(meta, q, v, chunk_size, scale, use_h0, use_ht, v_split=v_split)
    sms, bk, bv = sm_count(q.device), L.consts["BK"], L.consts["BV"]
    programs = lambda: L.B * L.H * tuning.cdiv(L.K, bk) * tuning.cdiv(L.V, bv)
    if meta["bwd_k_split" if bwd else "k_split"]:
        while bk > SCAN_BK and programs() < sms:
            bk //= 2
    elif v_split:
        while bv > SCAN_BV and programs() < sms:
            bv //= 2
    if (bk, bv) == (L.consts["BK"], L.consts["BV"]):
        return L
    return Launch.of(meta, q, v, chunk_size, scale, use_h0, use_ht, v_split=v_split,
                     k_split=bk if bk < L.consts["BK"] else None, max_bv=bv, narrow_v=bv < 64)


def backward(compiled, q, k, v, extras, scale, h0s, do, dhts, chunk_size, per_token, schedule=None, o=None,
             kept: KeptStates | None = None):
    """Gradients of q, k, v, each extra and the initial states. The backward recomputes its states
    unless the forward `kept` them (KeptStates), so its chunk need not be the forward's. On the GPU two
    ways are timed on the first call per shape bucket (runtime/tuning.py): the variant's chunk and half
    of it, or, where the compiler split the gradient kernel by outputs (passes/split_by_output.py), the
    variant's chunk with the split kernels and half of it with the whole one (both relieve the gradient
    kernel's registers; measured on an H200, the split at half the chunk never won), and the chunk the
    forward kept its states at where that is neither (no recompute there). A chunk that does not fit
    in shared memory is halved. FLEXLA_BACKWARD_CHUNK caps the chunk (experiments); off the GPU the
    split kernels run where they exist."""
    ways, at = _backward_ways(compiled, q, k, v, extras, scale, h0s, do, dhts, chunk_size, per_token, schedule,
                              o, kept)
    return chunk_search(compiled, q, v, chunk_size, "backward", ways, at,
                        pass_key(compiled, "backward", q, v, chunk_size, schedule, h0s, dhts,
                                 os.environ.get("FLEXLA_BACKWARD_CHUNK"), kept.chunk_size if kept is not None else None),
                        name_of=lambda way: f"{way[0]} {'split' if way[1] else 'whole'}{' in K phases' * way[2]}",
                        unit="chunk and gradient kernels")


def _backward_ways(compiled, q, k, v, extras, scale, h0s, do, dhts, chunk_size, per_token, schedule, o, kept):
    """The ways the backward times (chunk, split gradient kernels, K phases), and the function
    that runs one."""
    split_exists = bool(compiled.meta["split_grad_kernels"])
    # gradient kernels in two phases on K slices where K is too wide for one program (part of every
    # way, so that the tuning cache keeps choices with and without them apart)
    phases = bool(compiled.meta["k_phase_grads"]) and q.shape[-1] > GRAD_K_PHASES_ABOVE

    def at(way):
        chunk, split, phased = way
        run = lambda c: _backward(compiled, q, k, v, extras, scale, h0s, do, dhts, c, per_token, schedule, split,
                                  o=o, kept=kept, phases=phased)
        return with_fitting_chunk(run, fit_key(compiled, "backward", q, v), chunk)
    cap = os.environ.get("FLEXLA_BACKWARD_CHUNK")
    if cap or not searches_chunk(q, v, chunk_size, schedule):
        ways = [(min(chunk_size, int(cap or chunk_size)), split_exists, phases)]
    else:
        ways = [(chunk_size, split_exists, phases), (chunk_size // 2, False, phases)]
        if kept is not None and kept.chunk_size not in (c for c, _, _ in ways):
            # the forward's chunk (its search may take twice the variant's): there the backward
            # reuses the states the forward kept instead of running the forward's scan again
            ways.append((kept.chunk_size, split_exists, phases))
    return ways, at


def _backward_dry_run(compiled, q, k, v, extras, scale, h0s, want_ht, chunk_size, per_token, schedule):
    """Within a dry run (runtime/precompile.py) of the forward: the backward's first call, its launches
    recorded, with stand-ins for what the forward will give it (the gradient of o, of the final
    states where the forward returns them, o itself). Its states are not known kept yet: a way at
    a chunk only the forward's search takes compiles on the backward's own call."""
    if per_token is None:
        return
    do = _empty(*v.shape, dtype=v.dtype, device=v.device)
    dhts = final_state_like(compiled, q, v) if want_ht else None
    ways, at = _backward_ways(compiled, q, k, v, extras, scale, h0s, do, dhts, chunk_size, per_token, schedule,
                              do, None)
    key = _search_key(compiled, q, v, chunk_size, "backward", ways)
    for way in tuning.to_search(key, ways) if key else ways:
        at(way)


def _backward(compiled, q, k, v, extras, scale, h0s, do, dhts, chunk_size, per_token, schedule, split, o=None,
              kept: KeptStates | None = None, phases: bool = False):
    """Gradients of q, k, v, each extra and the initial states. The fused schedule walks each
    (batch, head) in reverse once; the chunk-parallel one runs the state-gradient scan alone
    (V split when legal) and then every chunk's gradients in parallel (by the split gradient
    kernels when `split`), for one more fp32 state per chunk of memory (`dstates`). Both run the
    forward's scan first, to recompute the states, unless the forward `kept` them at this chunk."""
    L = Launch.of(compiled.meta, q, v, chunk_size, scale, h0s is not None, dhts is not None, v_split=False)
    B, H, NT = L.B, L.H, L.NT
    size = lambda tile: state_sizes(tile, L.K, L.V)
    tiles = compiled.meta["states"]
    sched = choose_schedule(B, H, NT, 1, sm_count(q.device), schedule)
    if sched == "fused" and chunk_size < 64 and q.device.type == "cuda":
        # the fused backward below chunk 64 gave wrong dk for the delta rules and KDA on an H200
        # (right under the interpreter; not yet understood): the chunk-parallel one instead
        if schedule == "fused":
            print(f"flexla: {compiled.meta['variant']}: fused backward at chunk {chunk_size} is not trusted on "
                  "the GPU yet; running the chunk-parallel backward", file=sys.stderr)
        sched = "chunk"
    G = H // q.shape[2]         # heads sharing one q/k head: per-head gradients, summed below
    dq = _empty(L.B, L.T, H, L.K, dtype=q.dtype if G == 1 else state_dtype(q), device=q.device)
    dk = _empty(L.B, L.T, H, L.K, dtype=k.dtype if G == 1 else state_dtype(q), device=k.device)
    dv = _empty(*v.shape, dtype=v.dtype, device=v.device)
    wanted = compiled.meta["extra_grads"]      # the others' pointers are never written
    dextras = [q if not want else _empty(*e.shape, dtype=state_dtype(q), device=e.device) if tok
               else _empty(B, NT, *e.shape, dtype=state_dtype(q), device=e.device)
               for e, tok, want in zip(extras, per_token, wanted)]
    dh0s = [_empty(B, H, *size(t), dtype=state_dtype(q), device=q.device) for t in tiles] if h0s is not None else None
    reuse = kept is not None and kept.chunk_size == chunk_size
    states = kept.states if reuse else state_buffers(compiled, q, v, chunk_size)
    dstates = [_empty(B * H, NT, *size(t), dtype=between_kernels(q, low), device=q.device) if sched == "chunk" else q
               for t, low in zip(tiles, compiled.meta["dstates_in_input_dtype"])]
    per_state = [x for i in range(len(tiles)) for x in (states[i], dstates[i], dhts[i] if dhts is not None else q,
                                                        dh0s[i] if dh0s is not None else q)]
    phased = compiled.meta["k_phase_grads"] if phases else {}
    only_phases = [] if phased else compiled.meta["k_phase_staged"]   # not allocated where unused
    staged = (staged_buffers(compiled.meta["bwd_staged"], L, q, chunk_size, only_phases) if sched == "chunk"
              else [q] * len(compiled.meta["bwd_staged"]))
    if reuse and sched == "chunk":
        for slot, tensor in kept.scan_written.items():
            staged[slot] = tensor
    grads = compiled.meta["split_grad_kernels"] if split else ["bwd_grads"]
    flags = gate_flags(compiled, L, ["bwd_prep", *grads] if sched == "chunk" else [])
    if compiled.meta["bwd_reads_o"] and o is None:
        raise ValueError(f"{compiled.meta['variant']}'s backward reads the forward's output o: pass it")
    o = do if o is None else o.contiguous()        # do stands in for an o the kernels do not read
    pointers = lambda ds, st=staged: direct.Pointers([q, k, v, *extras, do, o, *per_state, dq, dk, dv, *ds, *st,
                                                      flags])
    ptrs = pointers(dextras)
    def recompute(fwd_staged=None):
        if not reuse:
            chunk_states(compiled, q, k, v, extras, scale, h0s, chunk_size, states, fwd_staged)
    if sched == "fused":
        recompute()
        L.run(compiled.module.bwd, (1, B * H), ptrs)
    else:
        if compiled.meta["bwd_stages_forward"]:   # one prep kernel stages for both scans
            run_prep(compiled, q, v, chunk_size, scale, L, "bwd_prep", ptrs)
            recompute([staged[i] if i is not None else None for i in compiled.meta["bwd_stages_forward"]])
        else:
            recompute()
            if "bwd_prep" in compiled.meta["kernels"]:
                run_prep(compiled, q, v, chunk_size, scale, L, "bwd_prep", ptrs)
        scan = scan_launch(compiled, q, v, chunk_size, scale, h0s is not None, dhts is not None, "backward")
        scan.run(compiled.module.bwd_states, (scan.NK * scan.NV, B * H), ptrs)
        for name in (n for g in grads for n in phased.get(g, [g])):
            grad = grad_launch(compiled, q, v, chunk_size, scale, L, name)
            parts = k_part_buffers(compiled, name, grad.NK, dextras)
            handed = handed_parts(compiled, name, grad, staged)
            nv = 1 if name in compiled.meta["v_loop_grads"] else grad.NV   # a loop walks V's slices
            ptrs_here = ptrs if not parts and not handed else pointers(
                [parts.get(i, d) for i, d in enumerate(dextras)], [handed.get(i, s) for i, s in enumerate(staged)])
            grad.run(getattr(compiled.module, name), (NT, grad.NK * nv, B * H), ptrs_here)
            for i, part in parts.items():
                torch.sum(part, 3, out=dextras[i])
            for i, part in handed.items():
                torch.sum(part, 2, out=staged[i])
    dextras = [None if not want else d.to(e.dtype) if tok else d.sum((0, 1)).to(e.dtype)
               for d, e, tok, want in zip(dextras, extras, per_token, wanted)]
    if G > 1:
        dq = dq.view(L.B, L.T, H // G, G, L.K).sum(3).to(q.dtype)
        dk = dk.view(L.B, L.T, H // G, G, L.K).sum(3).to(k.dtype)
    return dq, dk, dv, dextras, dh0s


def final_state_like(compiled, q, v):
    """Zero final states (to stand in for a gradient autograd did not provide)."""
    B, H, K, V = q.shape[0], v.shape[2], q.shape[-1], v.shape[-1]
    return [torch.zeros(B, H, *state_sizes(t, K, V), dtype=state_dtype(q), device=q.device)
            for t in compiled.meta["states"]]
