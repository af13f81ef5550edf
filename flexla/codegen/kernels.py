"""Turns kernel plans into what the templates render: loads, phases of Triton lines, stores.

Every kernel of a module shares one signature (pointers in a fixed order, then sizes and
constexprs), so the runtime launches all of them the same way.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..frontend.signature import Extra
from ..ir import Graph, Op
from ..passes.partition import KernelPlan
from .lower import lines, var

TEMPLATES = {"fused_fwd": "fused.py.jinja", "chunk_states": "chunk_states.py.jinja",
             "chunk_output": "chunk_output.py.jinja", "bwd": "backward.py.jinja",
             "bwd_states": "backward_states.py.jinja", "bwd_grads": "backward_grads.py.jinja"}
CARRIED = {"fused_fwd": "S", "chunk_states": "S", "bwd": "dS_next", "bwd_states": "dS_next"}
NEXT = {"fused_fwd": "S_next", "chunk_states": "S_next", "bwd": "dS", "bwd_states": "dS"}


@dataclass(frozen=True)
class Access:
    """How a kernel reaches one tensor: `kind` picks the address pattern in _macros.jinja."""
    var: str
    ptr: str
    kind: str            # token | head | head_partial | state | chunk_state | scale
    feature: str | None = None
    row: str = "row"     # token rows: `row` per head, `row_qk` for q and k shared by a group of heads

    @property
    def lanes(self) -> str:
        return {"K": "i_K", "V": "o_V"}.get(self.feature, "")


def forward_pointers(extras: list[Extra]) -> list[str]:
    return ["q", "k", "v"] + [e.name for e in extras] + ["o", "h0", "ht", "states"]


def backward_pointers(extras: list[Extra]) -> list[str]:
    return (["q", "k", "v"] + [e.name for e in extras] + ["do", "states", "dstates", "dht", "dh0", "dq", "dk", "dv"]
            + [f"d_{e.name}" for e in extras])


def input_access(name: str, extras: dict[str, Extra]) -> Access:
    v = var(name)
    if name == "scale":
        return Access(v, "", "scale")
    if name in ("q", "k"):
        return Access(v, f"{name}_ptr", "token", "K", row="row_qk")
    if name in ("v", "do"):
        return Access(v, f"{name}_ptr", "token", "V")
    if name == "S":
        return Access(v, "states_ptr", "chunk_state")
    if name == "dS_next":          # when not carried: read back from the reverse scan
        return Access(v, "dstates_ptr", "chunk_state")
    e = extras[name]
    return Access(v, f"{name}_ptr", "token" if e.per_token else "head", e.feature)


def output_access(role: str, extras: dict[str, Extra]) -> Access:
    if role == "o":
        return Access("", "o_ptr", "token", "V")
    if role in ("dq", "dk"):
        return Access("", f"{role}_ptr", "token", "K")
    if role == "dv":
        return Access("", "dv_ptr", "token", "V")
    e = extras[role[2:]]
    return Access("", f"{role}_ptr", "token" if e.per_token else "head_partial", e.feature)


@dataclass
class KernelSource:
    name: str
    template: str
    pointers: list
    loads: list
    phases: dict
    stores: list
    carry: str = ""
    state_next: str = ""
    h0: Access | None = None
    ht: Access | None = None
    states: Access | None = None
    dstates: Access | None = None
    dht: Access | None = None
    dh0: Access | None = None


def kernel_source(plan: KernelPlan, extras: list[Extra], direction: str) -> KernelSource:
    g: Graph = plan.graph
    by_name = {e.name: e for e in extras}
    carried = CARRIED.get(plan.name)
    used = {i for n in g.nodes for i in n.inputs} | set(g.outputs.values())
    loads = [input_access(n.name, by_name) for n in g.inputs if n.name in used and n.name != carried]
    phases = {p: lines(g, names) for p, names in plan.phases.items()}
    next_role = NEXT.get(plan.name)
    stores = [(output_access(role, by_name), _ref(g, name)) for role, name in g.outputs.items()
              if role not in ("S_next", "dS")]
    pointers = forward_pointers(extras) if direction == "forward" else backward_pointers(extras)
    ks = KernelSource(plan.name, TEMPLATES[plan.name], [f"{p}_ptr" for p in pointers], loads, phases, stores)
    if carried:
        ks.carry = var(carried)
        ks.state_next = _ref(g, g.outputs[next_role])
    ks.states = Access(var("S"), "states_ptr", "chunk_state")
    ks.dstates = Access("", "dstates_ptr", "chunk_state")
    if direction == "forward":
        ks.h0, ks.ht = Access(ks.carry, "h0_ptr", "state"), Access("", "ht_ptr", "state")
    else:
        ks.dht, ks.dh0 = Access(ks.carry, "dht_ptr", "state"), Access("", "dh0_ptr", "state")
    return ks


def _ref(g: Graph, name: str) -> str:
    n = g[name]
    if n.op is Op.CONST:
        return f"tl.zeros([BK, BV], dtype=ACC) + {float(n.a['value'])!r}"
    return var(name)
