"""Tiling: whether the V axis, and the K axis of a state scan or a gradient kernel, can be split
across programs (the block sizes of a launch follow from it at run time, `runtime/launch.py`).

V is separable when no op mixes lanes along V: every tile with a V dim is only combined
elementwise, transposed, reshaped, or multiplied by a matrix that does not contract over V. Then
programs that each own a slice of V compute exactly the slices of the whole result.

K is kept whole except in the state scans, which the launcher splits along K too when they
would otherwise leave the GPU idle (a long sequence and few heads), and in the per-chunk gradient
kernels whose [K, V] states would be too big for one program (GLA's dq/dk/dg at K = V = 128 and
256, `codegen/kernels.py` marks them). The K rule looks at the axis
each op works along, so a cumulative sum over the chunk of a [C, K] gate or a product contracting
the chunk stays separable; a product contracting K (the delta rule's w S) does not.

A gradient kernel may still split K when what it contracts over K only flows, linearly, into
outputs without a K axis (retention's d_gamma: a sum over K of q dq - k dk): each slice then
adds a part of those outputs, which the launcher sums (`k_slices`).

Where such a part meets K-wide work again (KDA's tril(dA) after the inverse, which gated_apply
spreads back over the keys), the kernel may still run on slices as two kernels (`k_phases`): the
first hands each slice's part on, the launcher sums them, the second reads the whole.

A gradient kernel that contracts over V (dq, dk and the gates' gradients sum over V) may instead
walk V in slices inside one program (`v_loop`): each slice's contractions are added up in the
loop and what depends on them is computed once after it, so a program holds [K, V/n] slices of
the states rather than whole ones (the delta rules' kernels, which cannot split K, and KDA's
where its phases do not run).
An output kernel may walk K the same way (`k_loop`: its q k^T and q S sum over K).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir import K, V, Graph, Node, Op
from ..ir.ops import ELEMENTWISE

V_SAFE = ELEMENTWISE | {Op.TRANSPOSE, Op.UNSQUEEZE, Op.SQUEEZE, Op.EXPAND, Op.FULL, Op.INPUT, Op.CONST}


def v_split_blocker(graph: Graph) -> str | None:
    """The first node that mixes lanes along V, described, or None when V is separable."""
    for n in graph.nodes:
        shapes = [graph[i].shape for i in n.inputs] + [n.shape]
        if not any(V in s for s in shapes) or n.op in V_SAFE:
            continue
        if n.op is Op.MM and graph[n.inputs[0]].shape[1] != V:
            continue
        return _described(n)
    return None


def mixes(graph: Graph, n, dim) -> bool:
    """Whether node n combines lanes along dim (the K rule above)."""
    shapes = [graph[i].shape for i in n.inputs] + [n.shape]
    if not any(dim in s for s in shapes) or n.op in V_SAFE:
        return False
    src = graph[n.inputs[0]].shape if n.inputs else n.shape
    if n.op in (Op.SUM, Op.MAX):
        return any(src[d] == dim for d in n.a["dims"])
    if n.op in (Op.CUMSUM, Op.REVCUMSUM, Op.SELECT):
        return src[n.a["dim"]] == dim
    if n.op is Op.PLACE:
        return n.shape[n.a["dim"]] == dim
    if n.op in (Op.MM, Op.GATED_SCORES):          # contract their first operand's second axis
        return src[1] == dim
    if n.op in (Op.GATED_APPLY, Op.GATED_APPLY_T):  # mix rows of x ([N, M]) only
        return src[0] == dim
    return True                                   # tril, eye, arange, solves: lanes by index


def k_split_blocker(graph: Graph) -> str | None:
    """The first node that mixes lanes along K, described, or None when K is separable."""
    for n in graph.nodes:
        if mixes(graph, n, K):
            return _described(n)
    return None


FIRST_K_SLICE = "first_k_slice"    # an input: 1 in the programs of K's first slice, 0 in the others
# ops that map a sum of parts to the sum of their results (on a part: the other operands whole)
LINEAR = {Op.NEG, Op.TRANSPOSE, Op.UNSQUEEZE, Op.SQUEEZE, Op.EXPAND, Op.SUM, Op.CUMSUM, Op.REVCUMSUM,
          Op.TRIL, Op.TRIU, Op.SELECT, Op.PLACE}


@dataclass(frozen=True)
class KSlices:
    """How a kernel runs on slices of K: `graph` (None where it cannot) computes, on one slice,
    that slice's lanes of the outputs with a K axis and a part of those in `partial`, whose sum
    over the slices is the whole value."""
    graph: Graph | None
    partial: frozenset = frozenset()
    blocker: str | None = None
    meets: tuple = ()          # where blocked by parts met as a whole (k_phases): those parts

    @property
    def usable(self) -> bool:
        """Whether a gradient kernel may run on these slices: dq, dk and dv are each slice's own
        lanes, not parts (the launcher sums parts of extras' gradients only)."""
        return self.graph is not None and not self.partial & {"dq", "dk", "dv"}


def k_kinds(graph: Graph) -> dict:
    """Each node's relation to K: sliced (it has a K axis: on a slice, the slice's lanes), part
    (built on sliced values without a K axis: on a slice, where k_slices accepts the kernel, a part
    whose sum over the slices is the whole value) or whole (no K lanes in it)."""
    kind = {}
    for n in graph.nodes:
        ins = [kind[i] for i in n.inputs]
        kind[n.name] = ("sliced" if K in n.shape else "part" if "sliced" in ins or "part" in ins else "whole")
    return kind


def k_slices(graph: Graph) -> KSlices:
    """Runs a kernel on slices of K where every part (k_kinds) is a contraction over K of sliced
    values or depends on one linearly. A whole term added to a part is counted by the first slice
    only (multiplied by the FIRST_K_SLICE input); anything else that meets a part (a product of
    two, a part broadcast along K, exp) blocks."""
    kind, nodes, first_slice = k_kinds(graph), [], set()
    for n in graph.nodes:
        parts = [i for i in n.inputs if kind[i] == "part"]
        if kind[n.name] == "sliced":
            if parts or mixes(graph, n, K):
                meets = () if mixes(graph, n, K) else tuple(parts)
                return KSlices(None, blocker=_described(n), meets=meets)
        elif any(kind[i] == "sliced" for i in n.inputs):
            if parts or n.op not in (Op.MM, Op.SUM):        # a contraction over K: the slice's part
                return KSlices(None, blocker=_described(n))
        elif kind[n.name] == "whole":
            pass
        elif n.op in (Op.ADD, Op.SUB):
            inputs = list(n.inputs)
            for j, i in enumerate(inputs):
                if kind[i] == "whole":                     # counted once: by the first slice
                    inputs[j] = f"{i}_on_first_k_slice"
                    if inputs[j] not in first_slice:
                        first_slice.add(inputs[j])
                        nodes.append(Node(inputs[j], Op.MUL, (i, FIRST_K_SLICE), (), graph[i].shape, n.loc))
            n = Node(n.name, n.op, tuple(inputs), n.attrs, n.shape, n.dtype, n.loc)
        elif not ((n.op in LINEAR or n.op in (Op.MUL, Op.MM) or (n.op is Op.DIV and kind[n.inputs[0]] == "part"))
                  and len(parts) == 1):
            return KSlices(None, blocker=_described(n))
        nodes.append(n)
    if first_slice:
        nodes.insert(0, Node(FIRST_K_SLICE, Op.INPUT, (), (("role", FIRST_K_SLICE),), ()))
    partial = frozenset(role for role, name in graph.outputs.items() if kind[name] == "part")
    return KSlices(graph.replace(nodes), partial)


@dataclass(frozen=True)
class KPhases:
    """A gradient kernel as two kernels on slices of K: `first` computes the outputs that do not
    need `handed` and, on each slice, a part of each of `handed` (a contraction over K, or a value
    built on one linearly, that K-wide work needs whole: KDA's [C, C] tril(dA) after the inverse,
    which gated_apply spreads back over K); the launcher sums the parts, and `second` reads the
    sums and computes the other outputs. FLA's KDA backward hands its dA on the same way. What
    both would compute after a loop over V (tiling.v_loop: the sums over V of the state's products,
    what depends on them) the first also writes whole, `passed`, and the second reads it back."""
    first: Graph
    second: Graph
    handed: tuple
    passed: tuple = ()


def k_phases(graph: Graph) -> KPhases | None:
    """None where k_slices runs the kernel as it is, or where handing on the parts that block it
    does not make both halves run on slices (a chain of two such contractions: three phases)."""
    blocked = k_slices(graph)
    if blocked.graph is not None or not blocked.meets:
        return None
    handed = blocked.meets
    needs = lambda name: bool(graph.ancestors([name]) & set(handed))
    first = graph.subgraph({**{r: x for r, x in graph.outputs.items() if not needs(x)},
                            **{f"stage:{m}": m for m in handed}})
    later = {r: x for r, x in graph.outputs.items() if needs(x)}
    second = read_back(graph.subgraph(later), handed)
    one, two = k_slices(first), k_slices(second)
    if one.graph is None or one.partial & {"dq", "dk", "dv"} or not two.usable:
        return None
    # the second's sums over V without K lanes (KDA's sum over V of the solved dv2 times v, for
    # d_beta) every slice would compute alike: the first computes them instead, beside the same work
    kind_in_graph = k_kinds(graph)
    loop2 = v_loop(second)
    moved = [n for n in (loop2.sums if loop2 else ()) if kind_in_graph[n] == "whole" and n not in first]
    if moved:
        first = graph.subgraph({**first.outputs, **{f"stage:{m}": m for m in moved}})
    loop = v_loop(first)
    after_loop = first.descendants(loop.sums) if loop else set()
    in_first = {n.name for n in first.nodes if n.op is not Op.INPUT}
    kind = k_kinds(first)
    shared = {n.name for n in second.nodes if n.name in in_first}
    passed = tuple(n.name for n in second.nodes if n.name in moved or (
        n.name in shared and n.name in after_loop and kind[n.name] != "part" and (
            n.name in second.outputs.values() or any(n.name in u.inputs and u.name not in shared
                                                     for u in second.nodes))))
    if passed:
        first = first.replace(outputs={**{r: x for r, x in first.outputs.items() if x not in moved},
                                       **{f"stage:{m}": m for m in passed}})
        second = read_back(second, passed)
    return KPhases(first, second, handed, passed)


def read_back(graph: Graph, names) -> Graph:
    """`graph` with the named nodes turned into inputs (read from memory), and what only they
    needed removed."""
    nodes = [Node(n.name, Op.INPUT, (), (("role", n.name),), n.shape, n.dtype, n.loc) if n.name in names else n
             for n in graph.nodes]
    return graph.replace(nodes).subgraph(graph.outputs)


@dataclass(frozen=True)
class Walk:
    """One walk over an axis's slices: `before` it, the nodes without the axis's lanes that it (or
    what follows) needs first here; its `body`, the nodes with a slice's lanes (again from the
    slice's own loads where an earlier walk had them too) and its `sums`, contractions over the
    axis added up across slices. Node names, in graph order."""
    before: tuple
    body: tuple
    sums: tuple
    axis: object


@dataclass(frozen=True)
class Walks:
    """A kernel walking one axis in slices, once or several times: a walk's sums are whole only
    after it, so lanes that depend on them take another walk (KDA's prep: the keys' gated scores
    add up over K, their inverse follows, then w = T^-1 (beta k e^g) walks K again). `after`: what
    depends on the last sums, and what nothing in a walk needs."""
    walks: tuple
    after: tuple

    @property
    def sums(self) -> tuple:
        return tuple(s for w in self.walks for s in w.sums)

    def stored_in(self, name: str) -> int | None:
        """The walk whose body first computes `name` (its store goes there), or None."""
        return next((i for i, w in enumerate(self.walks) if name in w.body and name not in w.sums), None)


CONTRACTIONS = (Op.MM, Op.SUM)


def walks_over(graph: Graph, axis, contractions=CONTRACTIONS) -> Walks | None:
    """None where a slice would need another's lanes (a node mixing the axis's lanes other than one
    of `contractions` over it), or where nothing has the axis's lanes. Dead nodes are left out."""
    live = graph.ancestors(graph.outputs.values())
    nodes = [n for n in graph.nodes if n.name in live]
    kind, ready = {}, {}      # ready: the walk that computes a node, or the walks before a whole one
    for n in nodes:
        ready[n.name] = max((ready[i] + (kind[i] == "sum") for i in n.inputs), default=0)
        if axis in n.shape:
            if mixes(graph, n, axis):
                return None
            kind[n.name] = "body"
        elif any(kind[i] == "body" for i in n.inputs):
            if n.op not in contractions or not mixes(graph, n, axis):
                return None
            kind[n.name] = "sum"
        else:
            kind[n.name] = "whole"
    outputs, readers = set(graph.outputs.values()), {n.name: [] for n in nodes}
    for u in nodes:
        for i in set(u.inputs):
            readers[i].append(u.name)
    walks_of = {}      # a walked node: the walks that need it (lanes: recomputed in each from its loads)
    for n in reversed(nodes):
        if kind[n.name] != "whole":
            walks_of[n.name] = set().union({ready[n.name]} if kind[n.name] == "sum" or n.name in outputs else set(),
                                           *(walks_of[u] for u in readers[n.name] if u in walks_of))
    walks_of = {n: w for n, w in walks_of.items() if w}
    if not walks_of:
        return None
    count = 1 + max(max(w) for w in walks_of.values())
    place = {}                              # a whole node: before the first walk that needs it
    for n in reversed(nodes):
        if kind[n.name] == "whole":
            place[n.name] = min([place[u] if kind[u] == "whole" else min(walks_of.get(u, {count}))
                                 for u in readers[n.name]], default=count)
    in_order = lambda names: tuple(n.name for n in nodes if n.name in names)
    body = lambda w: {n for n, ws in walks_of.items() if w in ws}
    walks = tuple(Walk(in_order({n for n, p in place.items() if p == w}), in_order(body(w)),
                       in_order({n for n in body(w) if kind[n] == "sum"}), axis) for w in range(count))
    return Walks(walks, in_order({n for n, p in place.items() if p == count}))


def loop_over(graph: Graph, axis) -> Walks | None:
    """One walk, where it adds up a contraction over the axis (otherwise programs may split the
    axis instead)."""
    walks = walks_over(graph, axis)
    return walks if walks and len(walks.walks) == 1 and walks.sums else None


def v_loop(graph: Graph) -> Walks | None:
    """A gradient kernel's loop over V (dq and dk sum over V)."""
    return loop_over(graph, V)


def k_loop(graph: Graph) -> Walks | None:
    """An output kernel's loop over K (q k^T and q S sum over K): at K = 256 a program then holds
    [C, BK] slices of q and k rather than whole [C, 256] tiles, as FLA's output kernels do."""
    return loop_over(graph, K)


def prep_k_walks(graph: Graph) -> Walks | None:
    """A prep kernel's walks over K, where it contracts over K (scores, gated ones too: their
    products factor per key column, so slices add up): at K = 256 its [C, K] tiles of keys, gates
    and their products would not fit one program's registers (KDA's forward prep: 2.7 KB of
    spills a thread on sm_90), and FLA's KDA prep walks K in slices the same way."""
    walks = walks_over(graph, K, CONTRACTIONS + (Op.GATED_SCORES,))
    return _then_walking_v(graph, walks) if walks and walks.sums else None


def _then_walking_v(graph: Graph, walks: Walks) -> Walks:
    """`walks` and, where every node with V lanes comes after them and none mixes V, one more walk
    over V that adds nothing up (KDA's [C, V] solve u = T^-1 (beta v), whole at V = 256 a
    [C, 256] fp32 tile of v and one of u at once)."""
    v = walks_over(graph, V, contractions=())
    if v is None or len(v.walks) != 1 or not set(v.walks[0].body) <= set(walks.after):
        return walks
    (walk,) = v.walks
    before = tuple(n for n in walks.after if n in walk.before)
    after = tuple(n for n in walks.after if n not in walk.body and n not in before)
    return Walks(walks.walks + (Walk(before, walk.body, (), V),), after)


def _described(n: Node) -> str:
    return f"{n.name} = {n.op.value}(...) {n.loc or ''}".strip()


def tile(graph: Graph) -> Graph:
    blocker = v_split_blocker(graph)
    return graph.replace(v_split=blocker is None, v_split_blocker=blocker)

