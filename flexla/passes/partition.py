"""Partitioning into kernels, and the materialise-or-recompute decision for chunk tensors.

The forward graph of one chunk splits by what depends on the state S:

    intra   nodes that do not depend on S        (chunk-parallel work)
    merge   S-dependent nodes the output needs
    update  S-dependent nodes only the next state needs

The fused schedule runs all three in one kernel. The chunk-parallel schedule runs a state kernel
(only what S_next needs: dead code removes the rest of intra) and an output kernel (only what o
needs, with S_n read back). A chunk tensor that both kernels need is either recomputed by the
output kernel or written by the state kernel and read back: we recompute when its flops cost less
than moving its bytes twice at the machine balance of an H100/H200 (~180 flop per byte).

The state kernel's loop is sequential, so work in it that does not depend on S sits on the critical
path. Chunk tensors that feed the state update but take [C, C] work to compute (a score matrix, a
triangular inverse: the delta rule's w and u) are "staged": a chunk-parallel prep kernel computes
them once and the state and output kernels read them back (FLA precomputes w and u the same way).
The backward's reverse scan stages its own such tensors. So are small ones (a [C] or [K] vector, a
scalar per chunk) computed by mixing a chunk's rows (a cumulative sum of gates, the last row of
one): in a Triton program every such scan or reduction goes through shared memory and a barrier,
so each step of the scan waited for several of them; read back, they cost a few bytes per row.
And so is a [C, K] tile built on a [C, K] scan of rows (GLA's decayed keys): the scan reads it in
place of the tiles it was built from, so its bytes do not grow.

The other way round, a state-dependent [C, V] tile the scan computes and the output kernel would
compute again (the delta rules' u - w S) is written by the scan and read by the output kernel
(written_by_scan).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..ir import C, V, Graph, Op
from ..ir.graph import Node
from .cost import flops, numel
from .split_by_output import output_groups
from .tiling import k_loop, k_phases, k_split_blocker, mixes, prep_k_walks, read_back

MACHINE_BALANCE = 180          # flop per byte: 750 TFLOP/s over 4.2 TB/s


@dataclass(frozen=True)
class KernelPlan:
    name: str
    graph: Graph
    phases: dict = field(hash=False)           # phase -> node names, in order
    materialized: tuple = ()                   # chunk tensors read from memory instead of recomputed
    kind: str = ""                             # the template's kernel, where several share one
    k_phase_of: str = ""                       # a phase (tiling.k_phases): of this gradient kernel

    @property
    def role(self) -> str:
        return self.kind or self.name


def state_inputs(graph: Graph) -> list[str]:
    """The carried inputs: the states (forward) or their gradients (backward); `S` by default."""
    return graph.meta.get("states", ["S"])


def split_phases(graph: Graph) -> dict[str, list[str]]:
    states = state_inputs(graph)
    s_dep = graph.descendants(states) - set(states)
    needs_o = graph.ancestors([graph.outputs["o"]]) if "o" in graph.outputs else set()
    phases = {"intra": [], "merge": [], "update": []}
    for n in graph.nodes:
        if n.op in (Op.INPUT, Op.CONST):
            continue
        if n.name not in s_dep:
            phases["intra"].append(n.name)
        elif n.name in needs_o:
            phases["merge"].append(n.name)
        else:
            phases["update"].append(n.name)
    return phases


def recompute_or_materialize(graph: Graph, states: Graph, output: Graph) -> dict[str, str]:
    """For each intra tensor both kernels compute: 'recompute' or 'materialize', by the cost rule."""
    s_dep = graph.descendants(state_inputs(graph))
    shared = [n.name for n in output.nodes if n.name in states and n.name not in s_dep
              and n.op not in (Op.INPUT, Op.CONST)]
    decision = {}
    for name in shared:
        cost = sum(flops(graph, a) for a in graph.ancestors([name]) if a not in s_dep)
        moved = 2 * 4 * numel(graph[name].shape)
        decision[name] = "materialize" if cost > MACHINE_BALANCE * moved else "recompute"
    return decision


def quadratic(node: Node) -> bool:
    """A [C, C] tile: O(C^2) memory and at least O(C^2) work per chunk."""
    return sum(d == C for d in node.shape) >= 2


# ops that combine a chunk's rows through shared memory: scans, reductions, selections, products
ROW_MIXING = {Op.CUMSUM, Op.REVCUMSUM, Op.SELECT, Op.SUM, Op.MAX, Op.MM}


def mixes_rows(graph: Graph, node: Node) -> bool:
    """A scan, reduction, selection or product along the chunk dim (tiling.mixes along C)."""
    return node.op in ROW_MIXING and mixes(graph, node, C)


def staged_tensors(scan: Graph) -> list[str]:
    """The chunk tensors a sequential scan should read rather than compute: independent of the
    carried state, used by the state-dependent work, and either computed through a [C, C] tile or
    small (rank 0 or 1) and computed by mixing a chunk's rows. A candidate as large as a state ([K,
    V], no chunk dim) would cost a state's bytes per chunk, so its operands are staged instead and
    the scan does that last product itself. A [C, K] one without [C, C] work is staged when it is
    built on a scan or reduction of [C, K] rows (GLA's k * exp(g_last - cumsum(g))): read back, it
    replaces the scan's reads of the tiles it was built from; otherwise the scan computes it, and
    the small tensors it is built from may be staged (simple GLA's per-row decays)."""
    s_dep = scan.descendants([s for s in state_inputs(scan) if s in scan])
    staged: set[str] = set()

    def stage(name: str):
        n = scan[name]
        if n.op in (Op.INPUT, Op.CONST):
            return
        ancestors = [scan[a] for a in scan.ancestors([name])]
        if not any(quadratic(a) for a in ancestors):
            mixing = [a for a in ancestors if mixes_rows(scan, a)]
            big = C in n.shape and any(len(a.shape) == 2 for a in mixing)
            if mixing and 1 not in n.shape and (len(n.shape) <= 1 or big):
                staged.add(name)                    # small, or built on a [C, K] scan of rows
            elif len(n.shape) == 2:
                for i in n.inputs:
                    stage(i)
            return                                  # cheap enough to compute in the scan
        if len(n.shape) == 2 and C not in n.shape:
            for i in n.inputs:
                stage(i)
        elif 1 <= len(n.shape):
            staged.add(name)

    for n in scan.nodes:
        if n.name in s_dep:
            for i in n.inputs:
                if i not in s_dep:
                    stage(i)
    return [n.name for n in scan.nodes if n.name in staged]


def shared_with_prep(graph: Graph, staged: list[str], other: Graph) -> list[str]:
    """Tensors the prep kernel computes on its way to `staged` that the per-chunk kernel `other`
    would compute again through a triangular inverse (the delta rule's inverse, and w from it,
    which its gradient kernel needs besides what the reverse scan reads): those are staged too, so
    the per-chunk kernel reads them rather than redo the inverse, a chain of dependent small
    products, in a kernel already short of registers. Flops alone would say recompute (a [C, C]
    inverse is cheap next to moving it); the cost is latency and registers, which no flop count
    shows. Everything else (k * beta, a decay matrix) is recomputed."""
    on_the_way = graph.ancestors(staged) & {n.name for n in other.nodes}
    shared = set()
    for n in other.nodes:
        if n.name not in on_the_way:
            shared |= {i for i in n.inputs if i in on_the_way}
    shared |= {o for o in other.outputs.values() if o in on_the_way}
    inverse_work = graph.descendants([n.name for n in graph.nodes if n.op is Op.TRIINV])
    keep = lambda n: (n.name in inverse_work and n.op not in (Op.INPUT, Op.CONST) and C in n.shape
                      and 1 not in n.shape)
    return [n.name for n in graph.nodes if n.name in shared and n.name not in staged and keep(n)]


def stage(graph: Graph, scan: Graph, other: Graph, prep_name: str, also: list[str] = (), written: list[str] = ()):
    """Staging for one direction: the prep kernel's plan (none when nothing is staged), and the
    scan and the per-chunk graph with the staged tensors read back. `also`: tensors the prep kernel
    writes besides, for another kernel (the forward's scan, forward_staged.py); this direction's
    kernels compute them as before (a gradient kernel reading the delta rule's u back rather than
    recomputing it was no faster on an H200, run 133)."""
    written = list(written)
    staged = staged_tensors(scan)
    staged += shared_with_prep(graph, staged, read_back(other, staged + written))
    read = list(staged)
    staged += [n for n in also if n not in staged]
    return prep_plans(graph, staged, prep_name), read_back(scan, read), read_back(other, read + written), staged + written


def prep_plans(graph: Graph, staged: list[str], prep_name: str) -> dict[str, KernelPlan]:
    """The prep kernel writing `staged` (none where that is empty), and its form walking K in
    slices where it has one (the launcher takes that for wide K)."""
    if not staged:
        return {}
    prep = graph.subgraph({f"stage:{n}": n for n in staged})
    plans = {prep_name: KernelPlan(prep_name, prep, {"intra": _body(prep)})}
    if prep_k_walks(prep):
        plans[f"{prep_name}_k_loop"] = KernelPlan(f"{prep_name}_k_loop", prep, {"intra": _body(prep)})
    return plans


def scores_sharing_gates(prep: Graph | None, output: Graph) -> list[str]:
    """The output kernel's gated scores (products of exp-rescaled rows, S-free [C, C] tiles) over
    the same gates as gated scores the prep kernel computes anyway (KDA's q k scores next to its
    prep's k k ones): the prep then computes them too and the output kernel reads them back. In
    the prep they share both exp factors of every key element with the product it already has, so
    they cost it a load of q and one product; the output kernel loses two exps per element, the
    load of k, the product and its fix-up pass, keeps no K-wide gated work (so it may walk K and
    split V cheaply), and reads one [C, C] tile. FLA's KDA does the same (its intra kernel writes
    Aqk next to Akk). Gated scores with no such partner stay in the output kernel (GLA's, RWKV-6's:
    their preps have no gated product)."""
    if prep is None:
        return []
    gates = {n.inputs[2] for n in prep.nodes if n.op is Op.GATED_SCORES}
    return [n.name for n in output.nodes if n.op is Op.GATED_SCORES and n.inputs[2] in gates]


def written_by_scan(graph: Graph, scan: Graph, output: Graph) -> list[str]:
    """The [C, V] tiles that depend on the state, that the scan computes anyway and that the
    per-chunk kernel `output` would compute again (the delta rules' corrected values u - w S,
    FLA's v_new): the scan writes them per chunk and `output` reads them back, so it needs neither
    the product with the state nor its operands (w, u). Only where the scan never splits K (a
    slice of K would hold a part of such a tile); a V slice writes its own lanes."""
    if k_split_blocker(scan) is None:
        return []
    s_dep = graph.descendants(state_inputs(graph))
    candidates = [n.name for n in output.nodes if n.name in s_dep and n.name in scan and n.op is not Op.INPUT
                  and n.shape == (C, V)]
    read = read_back(output, candidates)
    used = {i for n in read.nodes for i in n.inputs} | set(read.outputs.values())
    return [n for n in candidates if n in used]


def partition_forward(graph: Graph) -> dict[str, KernelPlan]:
    fused = KernelPlan("fused_fwd", graph, split_phases(graph))
    states_graph = graph.subgraph({k: v for k, v in graph.outputs.items() if k != "o"})
    output_graph = graph.subgraph({"o": graph.outputs["o"]})
    prep, states_graph, output_graph, staged = stage(graph, states_graph, output_graph, "chunk_prep")
    scores = scores_sharing_gates(prep["chunk_prep"].graph if prep else None, output_graph)
    if scores:              # staged for the output kernel alone, after the scan's
        staged = staged + scores
        prep, output_graph = prep_plans(graph, staged, "chunk_prep"), read_back(output_graph, scores)
    decision = recompute_or_materialize(graph, states_graph, output_graph)
    materialized = tuple(n for n, d in decision.items() if d == "materialize")
    if materialized:
        raise NotImplementedError(f"the cost rule asks to materialise {materialized}; reading chunk "
                                  "tensors back is not implemented yet, so flexla recomputes only")
    from_scan = written_by_scan(graph, states_graph, output_graph)
    states_graph = states_graph.replace(outputs={**states_graph.outputs, **{f"stage:{n}": n for n in from_scan}})
    output_graph = read_back(output_graph, from_scan)
    meta = {"recompute": decision, "staged": staged + from_scan, "scan_staged": from_scan, "output_staged": scores}
    output = KernelPlan("chunk_output", output_graph.replace(**meta), split_phases(output_graph))
    # the same output walking K in slices, where its only K-mixing ops are contractions (not gated
    # products): the launcher takes it for wide K
    k_looped = {"chunk_output_k_loop": replace(output, name="chunk_output_k_loop")} if k_loop(output_graph) else {}
    return {
        "fused_fwd": fused,
        **prep,
        "chunk_states": KernelPlan("chunk_states", states_graph.replace(**meta), split_phases(states_graph)),
        "chunk_output": output,
        **k_looped,
    }


def partition_backward(graph: Graph, split_grads: str = "auto", forward_staged: list[str] = (),
                       forward_scan: list[str] = ()) -> dict[str, KernelPlan]:
    """The fused backward (one reverse walk computing everything), and its chunk-parallel split:
    the state gradient's reverse scan alone, then every chunk's input gradients in parallel: by
    `bwd_grads`, or where the gradients split (split_by_output.py) by two kernels as well, say
    `bwd_grads_dq_dk_d_g` and `bwd_grads_dv`; the launcher times both ways (runtime/launch.py).
    `forward_staged`: the graph's names of the forward scan's staged tensors (forward_staged.py),
    which the backward's prep kernel stages too, so that the forward's need not run; `forward_scan`:
    the graph's names of what the forward's scan writes (written_by_scan), which the gradient
    kernels read back from its run in the backward."""
    body = lambda g: {"grad": _body(g)}
    is_state_grad = lambda role: role.startswith("dS")
    scan = graph.subgraph({k: v for k, v in graph.outputs.items() if is_state_grad(k)})
    grads = graph.subgraph({k: v for k, v in graph.outputs.items() if not is_state_grad(k)})
    forward_scan = [n for n in forward_scan if n in grads]
    prep, scan, grads, staged = stage(graph, scan, grads, "bwd_prep", forward_staged, forward_scan)
    from_scan = written_by_scan(graph, scan, grads)     # k dS + A^T do, FLA's dv2
    scan = scan.replace(outputs={**scan.outputs, **{f"stage:{n}": n for n in from_scan}})
    grads = read_back(grads, from_scan)
    staged = staged + from_scan
    scan, grads = scan.replace(staged=staged), grads.replace(staged=staged)
    fused = graph.subgraph(graph.outputs)           # without the forward's staged tensors
    plans = {"bwd": KernelPlan("bwd", fused, body(fused)),
             **prep,
             "bwd_states": KernelPlan("bwd_states", scan, body(scan)),
             "bwd_grads": KernelPlan("bwd_grads", grads, body(grads))}
    groups = output_groups(grads, split_grads)
    for outputs in groups if len(groups) > 1 else ():
        name = "_".join(["bwd_grads", *outputs])
        part = grads.subgraph(outputs)
        plans[name] = KernelPlan(name, part, body(part), kind="bwd_grads")
    return _with_k_phases(plans)


def _with_k_phases(plans: dict[str, KernelPlan]) -> dict[str, KernelPlan]:
    """Each gradient kernel that k_slices cannot run on slices of K but two phases can
    (tiling.k_phases) also as those two kernels, `<name>_k0` and `<name>_k1`; what the first hands
    to the second is staged (one [C, C] tile per chunk; the launcher sums the slices' parts)."""
    phased = {name: k_phases(p.graph) for name, p in plans.items() if p.role == "bwd_grads"}
    phased = {name: ph for name, ph in phased.items() if ph}
    handed = sorted({m for ph in phased.values() for m in ph.handed + ph.passed})
    if not handed:
        return plans
    staged = plans["bwd_states"].graph.meta["staged"] + handed
    out = {name: replace(p, graph=p.graph.replace(staged=staged)) for name, p in plans.items()}
    for name, ph in phased.items():
        for i, g in enumerate((ph.first, ph.second)):
            g = g.replace(staged=staged, k_phase_handed=list(ph.handed))
            out[f"{name}_k{i}"] = KernelPlan(f"{name}_k{i}", g, {"grad": _body(g)}, kind="bwd_grads", k_phase_of=name)
    return out


def grad_kernels(plans: dict[str, KernelPlan]) -> list[str]:
    """The names of the split gradient kernels (none where the gradients stay in one kernel)."""
    return [n for n, p in plans.items() if p.kind == "bwd_grads" and not p.k_phase_of]


def k_phase_handed(plans: dict[str, KernelPlan]) -> list[str]:
    """The staged tiles the first phases hand on as parts, one per K slice (summed between)."""
    return sorted({m for p in plans.values() if p.k_phase_of for m in p.graph.meta["k_phase_handed"]})


def k_phase_staged(plans: dict[str, KernelPlan]) -> list[str]:
    """The staged tiles only the phases write (the launcher allocates them where phases run)."""
    return sorted({r[len("stage:"):] for p in plans.values() if p.k_phase_of for r in p.graph.outputs
                   if r.startswith("stage:")})


def k_phase_kernels(plans: dict[str, KernelPlan]) -> dict[str, list[str]]:
    """Per gradient kernel that has them, its two phases' kernels (tiling.k_phases)."""
    out = {}
    for n, p in plans.items():
        if p.k_phase_of:
            out.setdefault(p.k_phase_of, []).append(n)
    return out


def _body(g: Graph) -> list[str]:
    return [n.name for n in g.nodes if n.op not in (Op.INPUT, Op.CONST)]
