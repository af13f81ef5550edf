"""From callbacks to a loaded module of Triton kernels: trace, passes, partition, render, cache."""
from __future__ import annotations

import hashlib
import sys
import time

import torch
import triton

from .codegen import cache
from .codegen.kernels import kernel_source
from .codegen.render import render_module
from . import options
from .compiled import VERSION, Compiled, compiler_fingerprint, device_name
from .frontend.affine import check_affine
from .frontend.errors import CallbackError
from .frontend.signature import Extra
from .frontend.states import State, parse_states
from .frontend.to_ir import to_ir
from .frontend.size_independence import check_size_independent
from .frontend.trace import SECOND_SIZES, backward_step, forward_step, trace
from .ir import C, K, V, Graph
from .passes.forward_output import read_forward_output
from .passes.forward_staged import graft_forward_staged, reads_states, same_in_backward
from .passes.partition import (grad_kernels, k_phase_handed, k_phase_kernels, k_phase_staged, partition_backward,
                                partition_forward)
from .passes.pipeline import debug, run_passes
from .passes.precision import read_as_dot_operand
from .passes.tiling import k_split_blocker, v_split_blocker

DEFAULT_STATES = parse_states("[K, V]")
SYMBOLS = {"C": C, "K": K, "V": V}


def cache_key(name: str, extras: list[Extra], graphs: list[Graph]) -> str:
    """A hash of everything the generated module depends on: the traced and optimised graphs (so a
    change to a callback, a closure or a global it reads changes the key), flexla's compiler and
    templates, the versions of Triton and torch, and the device."""
    h = hashlib.sha256()
    for part in (compiler_fingerprint(), options.fingerprint(), triton.__version__, torch.__version__, device_name(),
                 name, repr([e.key for e in extras])):
        h.update(part.encode())
    for g in graphs:
        h.update(repr([(n.name, n.op.value, n.inputs, n.attrs, tuple(map(str, n.shape))) for n in g.nodes]).encode())
        h.update(repr(sorted(g.outputs.items())).encode())
    return h.hexdigest()[:32]


def _inputs(extras: list[Extra], states: list[State], backward: bool):
    """(role, symbolic shape) of every placeholder, and the tile each is traced with."""
    letters = [(s.name, s.tile) for s in states] + [("q", ("C", "K")), ("k", ("C", "K")), ("v", ("C", "V")),
                                                    ("scale", "scalar")]
    letters += [(e.name, e.tile) for e in extras]
    if backward:
        letters += [("do", ("C", "V"))] + [(s.grad_next, s.tile) for s in states]
    roles = [(r, () if t == "scalar" else tuple(SYMBOLS[d] for d in t)) for r, t in letters]
    return roles, [t for _, t in letters]


def build_graphs(name: str, callbacks: dict, extras: list[Extra],
                 states: list[State] = DEFAULT_STATES) -> tuple[Graph, Graph]:
    """Traced and optimised forward and backward graphs of one chunk."""
    n = len(states)
    roles, tiles = _inputs(extras, states, backward=False)
    outs = ["o"] + [s.next for s in states]
    fwd = to_ir(trace(forward_step(callbacks, n), callbacks, tiles), roles, outs, f"{name}_forward")
    again = to_ir(trace(forward_step(callbacks, n), callbacks, tiles, SECOND_SIZES), roles, outs,
                  f"{name}_forward", SECOND_SIZES)
    check_size_independent(fwd, again)
    check_affine(fwd, states)
    fwd = run_passes(fwd.replace(states=[s.name for s in states]))
    roles_b, tiles_b = _inputs(extras, states, backward=True)
    outs_b = [s.grad for s in states] + ["dq", "dk", "dv"] + [f"d_{e.name}" for e in extras]
    bwd = to_ir(trace(backward_step(callbacks, n), callbacks, tiles_b), roles_b, outs_b, f"{name}_backward")
    unwanted = {f"d_{e.name}" for e in extras if not e.grad}    # dead code to the passes
    bwd = bwd.replace(outputs={r: x for r, x in bwd.outputs.items() if r not in unwanted})
    bwd = run_passes(bwd.replace(states=[s.grad_next for s in states]))
    return fwd, read_forward_output(bwd, fwd)


def staged_meta(staged: list[str], graph: Graph, readers: list) -> list[tuple]:
    reads = lambda p, n: read_as_dot_operand(p.graph, n) or f"stage:{n}" in p.graph.outputs   # its writer
    return [(n, tuple(str(d) for d in graph[n].shape), all(reads(p, n) for p in readers)) for n in staged]


def compile_variant(name: str, callbacks: dict, extras: list[Extra], states: list[State] = DEFAULT_STATES,
                    warm: str | None = None) -> Compiled:
    """Trace, optimise and render (or find by its graphs' key) the module of these callbacks. The
    caller has already looked for it under its warm key (compiled.load_warm); a module found or
    built here is recorded under that key for the next process."""
    start = time.perf_counter()
    fwd, bwd = build_graphs(name, callbacks, extras, states)
    key = cache_key(name, extras, [fwd, bwd])
    module = cache.load(key)
    if module is not None:
        if warm:
            cache.write_alias(warm, key)
        return Compiled(key, module, cache.path_for(key), module.META, True)
    print(f"flexla: compiling {name}: traced in {time.perf_counter() - start:.1f}s, generating kernels ...",
          file=sys.stderr, flush=True)
    fplans = partition_forward(fwd)
    fstaged = fplans["chunk_states"].graph.meta["staged"]
    scan_staged = fplans["chunk_states"].graph.meta["scan_staged"]
    output_staged = fplans["chunk_states"].graph.meta["output_staged"]   # nothing of the scan's: not grafted
    grafted, fstaged_in_bwd = graft_forward_staged(bwd, fwd, [n for n in fstaged if n not in scan_staged + output_staged])
    scan_in_bwd = same_in_backward(grafted, fwd, scan_staged) if fstaged_in_bwd else []
    bplans = partition_backward(grafted, options.split_grads(), fstaged_in_bwd, [n for n in scan_in_bwd if n])
    if fstaged_in_bwd and reads_states(bplans["bwd_prep"].graph, states):
        # this prep must run after the forward's scan (mLSTM's stages the normaliser q n): keep both preps
        fstaged_in_bwd, scan_in_bwd, bplans = [], [], partition_backward(bwd, options.split_grads())
    else:
        bwd = grafted
    grads = grad_kernels(bplans)
    phase_kernels = k_phase_kernels(bplans)
    phased = [n for names in phase_kernels.values() for n in names]
    try:
        bstaged = bplans["bwd_states"].graph.meta["staged"]
        kernels = [kernel_source(p, extras, states, "forward", fstaged) for p in fplans.values()]
        kernels += [kernel_source(p, extras, states, "backward", bstaged) for p in bplans.values()]
    except NotImplementedError as e:
        raise CallbackError(name, None, str(e), "rewrite the callback with supported operations") from e
    meta = {
        "variant": name,
        # the backward reads the forward's output (passes/forward_output.py): the autograd function keeps it
        "bwd_reads_o": "o" in bwd,
        "extras": [(e.name, e.tile) for e in extras],
        # per extra, whether the backward computes its gradient (Extra.grad)
        "extra_grads": [e.grad for e in extras],
        "states": [s.tile for s in states],
        "v_split": bool(fwd.meta["v_split"]),
        "v_split_blocker": fwd.meta["v_split_blocker"],
        "bwd_v_split": v_split_blocker(bplans["bwd_states"].graph) is None,
        # may the state scans split K as well (when few programs would walk a long sequence)?
        "k_split": k_split_blocker(fplans["chunk_states"].graph) is None,
        "bwd_k_split": k_split_blocker(bplans["bwd_states"].graph) is None,
        "recompute": fplans["chunk_output"].graph.meta.get("recompute", {}),
        # per state: may the chunk-parallel schedule keep it (or its gradient) in the input dtype
        # between kernels? Only where every reader casts it to that dtype anyway.
        "states_in_input_dtype": [read_as_dot_operand(fplans["chunk_output"].graph, s.name) for s in states],
        "bwd_states_in_input_dtype": [all(read_as_dot_operand(p.graph, s.name) for n, p in bplans.items()
                                          if n != "bwd") for s in states],
        "dstates_in_input_dtype": [all(read_as_dot_operand(bplans[n].graph, s.grad_next)
                                       for n in ["bwd_grads", *grads, *phased]) for s in states],
        # chunk tensors a prep kernel writes for the scan and the per-chunk kernels (partition.py):
        # (name, tile dims, stored in the input dtype)
        "staged": staged_meta(fstaged, fwd, [fplans["chunk_states"], fplans["chunk_output"]]),
        # those the forward's scan writes (the rest its prep kernel does: partition.written_by_scan)
        "scan_staged": scan_staged,
        # those the forward's prep writes for its output kernel alone (partition.scores_sharing_gates)
        "output_staged": output_staged,
        "bwd_staged": staged_meta(bstaged, bwd, [bplans["bwd_states"], bplans["bwd_grads"]]),
        # per forward staged tensor, its place among the backward's (forward_staged.py): the
        # backward's prep writes those of the forward's prep, the forward's scan reads them there and
        # writes its own there (None: a scratch buffer, no backward kernel reads it); empty where
        # the backward runs the forward's prep
        "bwd_stages_forward": [bstaged.index(n) for n in fstaged_in_bwd] + [None] * len(output_staged) + [
            bstaged.index(n) if n in bstaged else None for n in scan_in_bwd]
        if fstaged_in_bwd else [],
        "split_grad_kernels": grads,
        # per gradient kernel that has them, its two phases on slices of K (tiling.k_phases): the
        # launcher runs them where K is too wide for one program, and sums the parts handed between
        "k_phase_grads": phase_kernels,
        "k_phase_handed": k_phase_handed(bplans),
        "k_phase_staged": k_phase_staged(bplans),
        # gradient kernels that mix no lanes along V (a split kernel computing dv alone): the
        # launcher may give each program a slice of V, where whole V tiles would not fit
        "v_split_grads": [n for n in [*grads, "bwd_grads"] if v_split_blocker(bplans[n].graph) is None],
        # gradient kernels that may run on slices of K (passes/tiling.k_slices: GLA's dq/dk/dg, each
        # key column apart; retention's, whose d_gamma each slice adds a part of): the launcher
        # splits K where the [K, V] state tiles are too big
        "k_split_grads": [k.name for k in kernels if k.k_split],
        # per such kernel, the extras whose gradients each slice adds a part of (summed by the launcher)
        "k_part_grads": {k.name: list(k.k_parts) for k in kernels if k.k_parts},
        # gradient kernels that walk V in slices inside each program (passes/tiling.v_loop: their
        # contractions over V add up across slices): the launcher picks the slice width
        "v_loop_grads": [k.name for k in kernels if k.v_loop],
        # prep kernels whose last walk is over V (passes/tiling.prep_k_walks): launched in V slices
        "prep_walks_v": [k.name for k in kernels if k.k_loop and k.k_loop.walks[-1].axis == "V"],
        "kernels": [k.name for k in kernels],
        # per-chunk kernels with gated products: the launcher runs each again as its fix-up pass
        "gated_kernels": [k.name for k in kernels if k.gated],
    }
    for f, b in zip(meta["staged"], meta["bwd_stages_forward"]):   # in fp32 unless both directions may not
        if b is None:
            continue
        tensor, dims, low = meta["bwd_staged"][b]
        meta["bwd_staged"][b] = (tensor, dims, low and f[2])
    source = render_module(variant=name, key=key, version=VERSION, forward_ir=str(fwd),
                           backward_ir=str(bwd), kernels=kernels, meta=meta)
    path = cache.store(key, source)
    module = cache.load(key)
    if module is None:
        raise RuntimeError(f"flexla generated a module that does not import: {path}")
    if warm:
        cache.write_alias(warm, key)
    print(f"flexla: compiled {name} in {time.perf_counter() - start:.1f}s -> {path}", file=sys.stderr,
          flush=True)
    if debug():
        print(source, file=sys.stderr)
    return Compiled(key, module, path, meta, False)
