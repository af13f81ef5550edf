"""Turns kernel plans into what the templates render: loads, phases of Triton lines, stores.

Every kernel of a module shares one signature (pointers in a fixed order, then sizes and
constexprs), so the runtime launches all of them the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..frontend.signature import Extra
from ..frontend.states import State
from ..ir import Graph, Op
from ..ir.ops import GATED
from ..passes.partition import KernelPlan
from ..passes.tiling import FIRST_K_SLICE, KSlices, k_loop, k_slices, prep_k_walks, v_loop
from .lower import block, dim_name, lines, named_lines, var

TEMPLATES = {"fused_fwd": "fused.py.jinja", "chunk_prep": "prep.py.jinja", "chunk_states": "chunk_states.py.jinja",
             "chunk_output": "chunk_output.py.jinja", "bwd": "backward.py.jinja", "bwd_prep": "prep.py.jinja",
             "bwd_states": "backward_states.py.jinja", "bwd_grads": "backward_grads.py.jinja",
             "chunk_output_k_loop": "chunk_output_k_loop.py.jinja", "chunk_prep_k_loop": "prep.py.jinja",
             "bwd_prep_k_loop": "prep.py.jinja"}
# one chunk a program, no loop over chunks
PER_CHUNK = {"chunk_prep", "chunk_output", "chunk_output_k_loop", "bwd_prep", "bwd_grads", "chunk_prep_k_loop",
             "bwd_prep_k_loop"}
# the kernels that walk an axis in slices, and how (passes/tiling.py)
WALKS = {"bwd_grads": v_loop, "chunk_output_k_loop": k_loop, "chunk_prep_k_loop": prep_k_walks,
         "bwd_prep_k_loop": prep_k_walks}
FORWARD_CARRY = {"fused_fwd", "chunk_states"}     # these carry the states through the chunk loop
BACKWARD_CARRY = {"bwd", "bwd_states"}            # these carry the state gradients
BLOCKS = {"KV": "[BK, BV]", "K": "[BK]", "V": "[BV]"}  # the Triton block of a state, by shape code
# a staged chunk tile's dims: (row length in memory, lanes, mask or None)
TILE_DIMS = {"C": ("BC", "i_C", None), "K": ("K", "o_K", "m_K"), "V": ("V", "o_V", "m_V")}


@dataclass(frozen=True)
class Access:
    """How a kernel reaches one tensor: `kind` picks the address pattern in _macros.jinja."""
    var: str
    ptr: str
    kind: str            # token | head | head_partial | state | chunk_state | chunk_tile | scale
    feature: str | None = None
    row: str = "row"     # token rows: `row` per head, `row_qk` for q and k shared by a group of heads
    shape: str = "KV"    # states: KV, K or V; chunk tiles: their dims, e.g. CK
    k_part: bool = False  # an output each K slice adds a part of: one slot per slice, summed by the launcher
    # a chunk tile a loop over chunks only adds to matrix products (_added_to_products)
    added_to_product: bool = False

    @property
    def lanes(self) -> str:
        return {"K": "o_K", "V": "o_V"}.get(self.feature, "")

    @property
    def block(self) -> str:
        return BLOCKS[self.shape]

    @property
    def tile_offset(self) -> str:
        return self.tile_offset_at("i_n")

    def tile_offset_at(self, chunk: str) -> str:
        """A staged tile, stored whole per chunk: [B*H, NT, *dims] (C rows padded to BC)."""
        tile = f"(i_bh * NT + {chunk})"
        if self.k_part:                             # one tile per K slice (tiling.k_phases)
            tile = f"({tile} * tl.cdiv(K, BK) + i_k)"
        if not self.shape:                          # a scalar per chunk
            return tile
        (size0, lanes0, _), *rest = [TILE_DIMS[d] for d in self.shape]
        base = f"{tile}.to(tl.int64) * {size0} + {lanes0}"
        if not rest:
            return base
        size1, lanes1, _ = rest[0]
        return f"({base})[:, None] * {size1} + {lanes1}[None, :]"

    @property
    def ahead(self) -> bool:
        """Loaded one chunk ahead in loops over chunks (_macros.jinja, load_ahead): a vector or
        scalar per chunk, too small for Triton to pipeline, or a tile Triton does not pipeline
        because it only feeds products' accumulators (added_to_product)."""
        return ((self.kind == "token" and not self.feature) or (self.kind == "chunk_tile" and len(self.shape) <= 1)
                or self.added_to_product)

    def ahead_addr(self, p: str) -> str:
        """Its address in the chunk whose index, row and lane names start with `p`."""
        if self.kind == "token":
            return f"{self.ptr} + {p}_row"
        return f"{self.ptr} + {self.tile_offset_at(p + '_n')}"

    def ahead_mask(self, p: str) -> str:
        return f"{p}_t < T" if self.kind == "token" else self.tile_mask

    @property
    def tile_mask(self) -> str:
        masks = [TILE_DIMS[d][2] for d in self.shape]
        if not masks:
            return ""
        if len(masks) == 1 or not any(masks):
            return masks[0] or ""
        return " & ".join(f"{m}{'[:, None]' if i == 0 else '[None, :]'}" for i, m in enumerate(masks) if m)


@dataclass(frozen=True)
class Store:
    """A store among a kernel's lines (_stored_when_computed); the others follow the lines."""
    access: Access
    value: str


@dataclass
class Carry:
    """A value carried through the chunk loop: a state (forward) or a state gradient (backward)."""
    var: str
    next: str
    init: Access          # h0 (forward) or dht (backward), read when USE_H0 / USE_HT
    final: Access         # ht (forward) or dh0 (backward)
    per_chunk: Access     # where its value at every chunk boundary goes: states / dstates


def forward_pointers(extras: list[Extra], states: list[State], staged: list[str]) -> list[str]:
    per_state = [s.pointer(b) for s in states for b in ("h0", "ht", "states")]
    return (["q", "k", "v"] + [e.name for e in extras] + ["o"] + per_state + [staged_pointer(n) for n in staged]
            + ["gate_flags"])


def backward_pointers(extras: list[Extra], states: list[State], staged: list[str]) -> list[str]:
    per_state = [s.pointer(b) for s in states for b in ("states", "dstates", "dht", "dh0")]
    return (["q", "k", "v"] + [e.name for e in extras] + ["do", "o"] + per_state + ["dq", "dk", "dv"]
            + [f"d_{e.name}" for e in extras] + [staged_pointer(n) for n in staged] + ["gate_flags"])


def staged_pointer(name: str) -> str:
    return f"staged_{name}"


def staged_access(v: str, name: str, graph: Graph, k_part: bool = False) -> Access:
    """A staged chunk tile, written by a prep kernel and read by the others."""
    return Access(v, f"{staged_pointer(name)}_ptr", "chunk_tile", shape="".join(map(str, graph[name].shape)),
                  k_part=k_part)


def input_access(name: str, extras: dict[str, Extra], states: list[State], graph: Graph) -> Access:
    v = var(name)
    if name in ("scale", FIRST_K_SLICE):
        return Access(v, "", name)
    if name in graph.meta.get("staged", ()):
        return staged_access(v, name, graph)
    if name in ("q", "k"):
        return Access(v, f"{name}_ptr", "token", "K", row="row_qk")
    if name in ("v", "do", "o"):     # o: the forward's output, in the backward (passes/forward_output.py)
        return Access(v, f"{name}_ptr", "token", "V")
    for s in states:
        if name == s.name:
            return Access(v, f"{s.pointer('states')}_ptr", "chunk_state", shape=s.shape_code)
        if name == s.grad_next:     # when not carried: read back from the reverse scan
            return Access(v, f"{s.pointer('dstates')}_ptr", "chunk_state", shape=s.shape_code)
    e = extras[name]
    return Access(v, f"{name}_ptr", "token" if e.per_token else "head", e.feature)


def output_access(role: str, extras: dict[str, Extra], graph: Graph, k_part: bool = False) -> Access:
    if role.startswith("stage:"):
        return staged_access("", role[len("stage:"):], graph, k_part)
    if role == "o":
        return Access("", "o_ptr", "token", "V")
    if role in ("dq", "dk"):
        return Access("", f"{role}_ptr", "token", "K")
    if role == "dv":
        return Access("", "dv_ptr", "token", "V")
    e = extras[role[2:]]
    return Access("", f"{role}_ptr", "token" if e.per_token else "head_partial", e.feature, k_part=k_part)


@dataclass
class KernelSource:
    name: str
    template: str
    pointers: list
    loads: list
    phases: dict
    stores: list
    carries: list
    gated: bool          # has gated products (whose fix-up pass it then needs, unless it loops)
    k_split: bool = False  # a gradient kernel whose programs may own K slices (passes/tiling.k_slices)
    k_parts: tuple = ()    # the extras' gradients each K slice adds a part of
    v_loop: "LoopSource | None" = None    # a gradient kernel walking V in slices (passes/tiling.v_loop)
    k_loop: "LoopSource | None" = None    # an output or prep kernel walking K in slices (passes/tiling.py)
    # the output kernel's loads sit both at the top (`loads`) and at first use (in `phases`), and its
    # EARLY_LOADS constexpr, a tuned knob (runtime/tuning.OUTPUT_CANDIDATES), keeps one of the two
    early_loads: bool = False


@dataclass
class WalkSource:
    """One walk over the slices of an axis: its lines (with loads at first use: _at_first_use)
    before the loop, the loop's body, `sums`: (variable, block) of each contraction over the axis
    the loop adds up, and the stores of what the body computes (once: in the first walk that does)."""
    before: list
    body: list
    sums: list
    body_stores: list
    axis: str


@dataclass
class LoopSource:
    """A kernel's walks over the slices of one axis (passes/tiling.walks_over), then its lines and
    stores after them."""
    walks: list
    after: list
    after_stores: list

    @property
    def before(self) -> list:
        return self.walks[0].before

    @property
    def body(self) -> list:
        return [x for w in self.walks for x in w.body]


def _carries(plan: KernelPlan, states: list[State]) -> list[Carry]:
    g, out = plan.graph, []
    for s in states:
        shape = s.shape_code
        acc = lambda base, v="": Access(v, f"{s.pointer(base)}_ptr", "state", shape=shape)
        per_chunk = lambda base, v="": Access(v, f"{s.pointer(base)}_ptr", "chunk_state", shape=shape)
        if plan.role in FORWARD_CARRY:
            out.append(Carry(var(s.name), _ref(g, g.outputs[s.next], shape), acc("h0", var(s.name)), acc("ht"),
                             per_chunk("states")))
        elif plan.role in BACKWARD_CARRY:
            out.append(Carry(var(s.grad_next), _ref(g, g.outputs[s.grad], shape),
                             acc("dht", var(s.grad_next)), acc("dh0"), per_chunk("dstates")))
    return out


def kernel_source(plan: KernelPlan, extras: list[Extra], states: list[State], direction: str,
                  staged: list[str]) -> KernelSource:
    """staged: the chunk tensors of this direction's prep kernel (every kernel of a direction shares
    one signature, so all of them get those pointers)."""
    g: Graph = plan.graph
    by_name = {e.name: e for e in extras}
    state_roles = {r for s in states for r in (s.next, s.grad)}
    slices = k_slices(g) if plan.role == "bwd_grads" else KSlices(None)
    parts = slices.partial - state_roles            # gradients of states are not stored here
    # a K phase runs on slices too where its parts are only handed on (tiling.k_phases: the first)
    k_split = slices.usable or (plan.k_phase_of != "" and slices.graph is not None)
    phases = plan.phases
    if k_split:
        g, phases = slices.graph, _with_added_nodes(phases, slices.graph)
    carries = _carries(plan, states)
    carried = {c.var for c in carries}
    used = {i for n in g.nodes for i in n.inputs} | set(g.outputs.values())
    loads = [input_access(n.name, by_name, states, g) for n in g.inputs
             if n.name in used and var(n.name) not in carried]
    if plan.role in FORWARD_CARRY | BACKWARD_CARRY:
        added = _added_to_products(g)
        loads = [replace(a, added_to_product=a.kind == "chunk_tile" and a.var in added) for a in loads]
    names = [n for p in phases.values() for n in p]     # a looping kernel has one phase (the output kernel two)
    loop = WALKS[plan.role](g) if plan.role in WALKS else None
    early_loads = plan.role == "chunk_output"
    per_chunk = plan.role in PER_CHUNK and not loop
    if per_chunk:      # outputs computed early, loads at first use (_at_first_use)
        phases = {p: _outputs_early(g, names) for p, names in phases.items()}
        phases, loads = _at_first_use_by_phase(g, phases, loads), loads if early_loads else []
    else:
        phases = {p: lines(g, names) for p, names in phases.items()}
    stores = [(output_access(role, by_name, g, k_split and role in parts), _ref(g, name))
              for role, name in g.outputs.items() if role not in state_roles]
    if per_chunk:
        phases, stores = _stored_when_computed(phases, stores)
    pointers = (forward_pointers(extras, states, staged) if direction == "forward"
                else backward_pointers(extras, states, staged))
    gated = any(n.op in GATED for n in g.nodes) and plan.role not in FORWARD_CARRY | BACKWARD_CARRY
    looped = loop and _loop_source(g, loop, loads, names, stores)
    return KernelSource(plan.name, TEMPLATES[plan.role], [f"{p}_ptr" for p in pointers], loads, phases, stores,
                        carries, gated, k_split,
                        tuple(sorted(r[2:] for r in parts if r.startswith("d_"))) if k_split else (),
                        v_loop=looped if plan.role == "bwd_grads" else None, early_loads=early_loads,
                        k_loop=looped if plan.role != "bwd_grads" else None)


def _added_to_products(g: Graph) -> set[str]:
    """The inputs whose every use adds them to a matrix product. Triton folds such an add into the
    product's accumulator, and its software pipeliner then leaves the load synchronous: in the delta
    rules' and KDA's state-gradient scans (`k dS + A^T do`, the staged term in fp32) every step
    waited for one [C, V] load (sm_90 TTGIR, Triton 3.6). Loaded a chunk ahead, it arrives during
    the step before. The prefetched tile costs registers (sm_90, the delta rule's scan in V slices of
    32 at 4 warps: 192 -> 250 a thread, no spills); H200, bf16: the delta rule's forward + backward
    7-9% faster, KDA's 2-3% (docs/performance.md, runs 152-155)."""
    users = {}
    for n in g.nodes:
        for i in n.inputs:
            users.setdefault(i, []).append(n)
    adds_product = lambda u, name: u.op == Op.ADD and all(
        g[i].op == Op.MM for i in u.inputs if i != name) and len(set(u.inputs)) == 2
    return {var(n.name) for n in g.inputs if n.name in users and all(adds_product(u, n.name) for u in users[n.name])}


def _loop_source(g: Graph, loop, loads: list, names: list, stores: list) -> LoopSource:
    """Loads, lines and stores of a kernel's phases (`names`), split around its walks over the
    slices of one axis. A whole value is stored at the end of the stretch that computes it (a sum:
    after its walk), a slice's lanes at the end of the first walk that computes them."""
    part = lambda nodes: [n for n in names if n in set(nodes)]       # in the phases' order
    segments = [w.before for w in loop.walks] + [loop.after]
    segment_of = {var(n): i for i, seg in enumerate(segments) for n in seg}
    segment_of.update({var(s): i + 1 for i, w in enumerate(loop.walks) for s in w.sums})
    walk_of = {var(n): loop.stored_in(n) for w in loop.walks for n in w.body}
    whole_stores = lambda i: [(a, v) for a, v in stores if walk_of.get(v) is None and segment_of.get(v, 0) == i]
    walks = []
    for i, w in enumerate(loop.walks):
        before = part(w.before)
        # the loop's own loads stay at the top of each step: there they are all in flight at once
        in_body = {var(n) for n in w.body}
        body_loads = [a for a in loads if a.var in in_body]
        before_loads = [a for a in loads if segment_of.get(a.var) == i and a not in body_loads]
        walks.append(WalkSource(_at_first_use(g, before, before_loads) + [Store(a, v) for a, v in whole_stores(i)],
                                body_loads + lines(g, part(w.body)),
                                [(var(s), block(g[s].shape)) for s in w.sums],
                                [(a, v) for a, v in stores if walk_of.get(v) == i], dim_name(w.axis)))
    last = len(loop.walks)
    after_loads = [a for a in loads if segment_of.get(a.var) == last]
    return LoopSource(walks, _at_first_use(g, part(loop.after), after_loads),
                      whole_stores(last))


def _outputs_early(g: Graph, names: list) -> list:
    """`names` with each output that nothing else reads (a staged tile's transpose, say) moved up
    to just after the last of its inputs computed here, so that it and its store
    (_stored_when_computed) free their registers early."""
    read = {i for n in g.nodes for i in n.inputs}
    outputs = set(g.outputs.values()) - read
    out = []
    for name in names:
        if name in outputs:
            after = max((out.index(i) for i in g[name].inputs if i in out), default=-1)
            out.insert(after + 1, name)
        else:
            out.append(name)
    return out


def _stored_when_computed(phases: dict, stores: list) -> tuple[dict, list]:
    """The phases with each store just after the line that computes its value, and the stores
    left for the end (of values no line computes: constants). Stored at the end, every output
    holds its registers through all the work after it: the delta rules' and KDA's prep kernels
    write five to ten staged tiles. sm_90 (Triton 3.6, chunk 64, with _outputs_early): KDA's
    backward prep at K = V = 128 spills 752 -> 200 bytes a thread at 8 warps (3056 -> 1432 at 4),
    at 256 4312 -> 2916; its forward prep at 256 520 -> 228; the gated delta rule's backward prep
    at 128 and 4 warps 216 -> 88 (at 8 warps 0 -> 8). H200, bf16 (run 156): KDA's forward and
    forward + backward 4-6% faster, the delta rules' within 1.5% (docs/performance.md)."""
    where = {}
    for p, body in phases.items():
        for i, line in enumerate(body):
            where[line.split(" = ", 1)[0] if isinstance(line, str) else line.var] = (p, i)
    placed, left = {}, []
    for a, value in stores:
        if value in where:
            placed.setdefault(where[value], []).append(Store(a, value))
        else:
            left.append((a, value))
    return {p: [x for i, line in enumerate(body) for x in (line, *placed.get((p, i), ()))]
            for p, body in phases.items()}, left


def _at_first_use(g: Graph, names: list, loads: list) -> list:
    """The lines of `names` with each load (an Access) just before the first line that reads it,
    the rest at the end (for the stores). Per-chunk kernels load this way, not all at the top:
    Triton keeps a product operand's shared-memory copy from its load to its last use, so a tile
    loaded early holds shared memory through everything before its product. sm_90 compiles
    (Triton 3.6; an H200 has 227 KB): the gated delta rule's gradient kernel at K = V = 256 and
    chunk 64, 228 -> 196 KB (its loads after the V loop); GLA's output kernel there (its fix-up
    pass), 228 -> 164 KB (the state, read by the last product)."""
    return _at_first_use_by_phase(g, {"": names}, loads)[""]


def _at_first_use_by_phase(g: Graph, phases: dict, loads: list) -> dict:
    """phase -> its lines with loads at first use (_at_first_use), across phases in their order;
    a load no line reads (one only a store reads) goes at the end of the last phase with lines (a
    template may leave empty phases out)."""
    pending = {a.var: a for a in loads}
    out = {}
    for p, names in phases.items():
        out[p] = []
        for _, line, reads in named_lines(g, names):
            out[p] += [pending.pop(var(i)) for i in sorted(reads) if var(i) in pending]
            out[p].append(line)
    if out:
        last = next((p for p in reversed(out) if out[p]), next(iter(out)))
        out[last] += list(pending.values())
    return out


def _with_added_nodes(phases: dict, graph: Graph) -> dict:
    """The phases with each node k_slices added in the phase of the node that uses it."""
    phase_of = {name: p for p, names in phases.items() for name in names}
    for n in reversed(graph.nodes):
        if n.name not in phase_of and n.op is not Op.INPUT:
            phase_of[n.name] = next(phase_of[u.name] for u in graph.nodes if n.name in u.inputs)
    return {p: [n.name for n in graph.nodes if phase_of.get(n.name) == p] for p in phases}


def _ref(g: Graph, name: str, shape: str = "") -> str:
    n = g[name]
    if n.op is Op.CONST:
        block = BLOCKS.get(shape)
        value = float(n.a["value"])
        return f"tl.zeros({block}, dtype=ACC) + {value!r}" if block else repr(value)
    return var(name)
