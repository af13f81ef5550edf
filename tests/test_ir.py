import dataclasses

import pytest
import sympy

from flexla.ir import C, K, V, Graph, Node, Op, VerifyError, make_node, verify
from flexla.ir.ops import ShapeError, broadcast

ONE = sympy.Integer(1)
SHAPES = {"s": (), "c": (C,), "k": (K,), "ck": (C, K), "kv": (K, V), "cv": (C, V), "c1": (C, ONE),
          "1k": (ONE, K), "kc": (K, C), "cc": (C, C), "b": (C, K)}


def shape_of(op, *inputs, **attrs):
    return make_node("n", op, inputs, attrs, SHAPES).shape


# ---------------------------------------------------------------- shape inference

@pytest.mark.parametrize("a, b, expected", [
    ("ck", "ck", (C, K)),
    ("ck", "s", (C, K)),          # scalar
    ("s", "ck", (C, K)),
    ("ck", "k", (C, K)),          # trailing dims align, like torch
    ("c1", "1k", (C, K)),         # both sides broadcast
    ("c1", "ck", (C, K)),
    ("c", "c", (C,)),
    ("s", "s", ()),
])
def test_broadcasting(a, b, expected):
    assert shape_of(Op.ADD, a, b) == expected
    assert shape_of(Op.MUL, b, a) == expected


@pytest.mark.parametrize("a, b", [("ck", "cv"), ("ck", "c"), ("ck", "kc")])
def test_broadcasting_mismatch_raises(a, b):
    with pytest.raises(ShapeError, match="broadcast"):
        shape_of(Op.ADD, a, b)


def test_where_broadcasts_three_operands():
    assert shape_of(Op.WHERE, "c1", "1k", "s") == (C, K)


def test_comparison_is_bool_and_broadcasts():
    n = make_node("m", Op.GT, ("c1", "1k"), {}, SHAPES)
    assert n.shape == (C, K) and n.dtype == "i1"
    assert make_node("a", Op.ADD, ("c1", "1k"), {}, SHAPES).dtype == "f32"


def test_mm_shapes():
    assert shape_of(Op.MM, "ck", "kv") == (C, V)
    assert shape_of(Op.MM, "kc", "cc") == (K, C)
    with pytest.raises(ShapeError, match="mm"):
        shape_of(Op.MM, "ck", "cv")                              # K != C
    with pytest.raises(ShapeError, match="mm"):
        shape_of(Op.MM, "c", "cv")                               # vector operand


@pytest.mark.parametrize("op, inputs, attrs, expected", [
    (Op.TRANSPOSE, ("ck",), {}, (K, C)),
    (Op.UNSQUEEZE, ("c",), {"dim": 0}, (ONE, C)),
    (Op.UNSQUEEZE, ("c",), {"dim": -1}, (C, ONE)),
    (Op.UNSQUEEZE, ("s",), {"dim": 0}, (ONE,)),
    (Op.SQUEEZE, ("c1",), {"dim": 1}, (C,)),
    (Op.SQUEEZE, ("c1",), {"dim": -1}, (C,)),
    (Op.EXPAND, ("c1",), {"shape": (C, V)}, (C, V)),
    (Op.SUM, ("ck",), {"dims": (1,), "keepdim": False}, (C,)),
    (Op.SUM, ("ck",), {"dims": (-1,), "keepdim": True}, (C, ONE)),
    (Op.SUM, ("ck",), {"dims": (0, 1), "keepdim": False}, ()),
    (Op.MAX, ("ck",), {"dims": (0,), "keepdim": True}, (ONE, K)),
    (Op.CUMSUM, ("ck",), {"dim": 0}, (C, K)),
    (Op.TRIL, ("cc",), {"diagonal": -1}, (C, C)),
    (Op.SELECT, ("ck",), {"dim": 0, "index": -1}, (K,)),
    (Op.SELECT, ("c",), {"dim": 0, "index": 0}, ()),
    (Op.PLACE, ("k",), {"shape": (C, K), "dim": 0, "index": -1}, (C, K)),
    (Op.CONST, (), {"value": 2.0}, ()),
    (Op.FULL, (), {"value": 0.0, "shape": (K, V)}, (K, V)),
    (Op.EYE, (), {"shape": (C, C)}, (C, C)),
    (Op.ARANGE, (), {"shape": (C,)}, (C,)),
    (Op.EXP, ("ck",), {}, (C, K)),
    (Op.POW, ("c",), {"exponent": 3.0}, (C,)),
])
def test_shape_rules(op, inputs, attrs, expected):
    assert shape_of(op, *inputs, **attrs) == expected


@pytest.mark.parametrize("op, inputs, attrs", [
    (Op.TRANSPOSE, ("c",), {}),
    (Op.SQUEEZE, ("ck",), {"dim": 0}),                           # C is not 1
    (Op.EXPAND, ("ck",), {"shape": (C, V)}),
])
def test_shape_rule_errors(op, inputs, attrs):
    with pytest.raises(ShapeError):
        shape_of(op, *inputs, **attrs)


def test_broadcast_accepts_python_one():
    assert broadcast((C, 1), (1, K)) == (C, K)


def test_make_node_freezes_and_sorts_attrs():
    n = make_node("s", Op.SUM, ["ck"], {"keepdim": False, "dims": [1]}, SHAPES, loc="intra, /tmp/v.py:3: x.sum(1)")
    assert n.attrs == (("dims", (1,)), ("keepdim", False))
    assert n.a == {"dims": (1,), "keepdim": False}
    assert n.inputs == ("ck",) and n.loc == "intra, /tmp/v.py:3: x.sum(1)"
    hash(n)                                                      # frozen and hashable (CSE keys)
    with pytest.raises(dataclasses.FrozenInstanceError):
        n.name = "t"


def test_node_key_ignores_name_and_loc():
    a = make_node("a", Op.EXP, ["ck"], {}, SHAPES, loc="intra:1")
    b = make_node("b", Op.EXP, ["ck"], {}, SHAPES, loc="intra:2")
    assert a.key() == b.key()
    assert a.key() != make_node("c", Op.EXP, ["b"], {}, SHAPES).key()


# ---------------------------------------------------------------- graph and verify

def _graph(*specs, outputs=None):
    """specs: (name, op, inputs, attrs); inputs are INPUT nodes given as (name, shape)."""
    shapes, nodes = {}, []
    for name, op, inputs, attrs in specs:
        n = make_node(name, op, inputs, attrs, shapes)
        nodes.append(n)
        shapes[name] = n.shape
    return Graph(nodes, outputs or {"o": nodes[-1].name}, {"name": "g"})


def _inp(name, shape):
    return (name, Op.INPUT, (), {"role": name, "shape": shape})


def test_verify_accepts_a_good_graph():
    g = _graph(_inp("q", (C, K)), _inp("k", (C, K)), ("kt", Op.TRANSPOSE, ["k"], {}),
               ("a", Op.MM, ["q", "kt"], {}))
    assert verify(g) is g


def test_verify_catches_use_before_def():
    g = _graph(_inp("x", (C, K)), ("y", Op.EXP, ["x"], {}), ("z", Op.NEG, ["y"], {}))
    bad = g.replace([g["x"], g["z"], g["y"]])
    with pytest.raises(VerifyError, match="z uses y before it is defined"):
        verify(bad)


def test_verify_catches_undefined_input():
    g = _graph(_inp("x", (C, K)))
    bad = g.replace([g["x"], Node("y", Op.EXP, ("nowhere",), (), (C, K))], {"o": "y"})
    with pytest.raises(VerifyError, match="before it is defined"):
        verify(bad)


def test_verify_catches_duplicate_names():
    g = _graph(_inp("x", (C, K)), ("y", Op.EXP, ["x"], {}))
    with pytest.raises(VerifyError, match="defined twice"):
        verify(g.replace([g["x"], g["y"], g["y"]]))


def test_verify_catches_wrong_recorded_shape():
    g = _graph(_inp("x", (C, K)), ("y", Op.EXP, ["x"], {}))
    bad = g.replace([g["x"], dataclasses.replace(g["y"], shape=(K, C))])
    with pytest.raises(VerifyError, match="recorded"):
        verify(bad)


def test_verify_catches_shapes_that_do_not_fit():
    g = _graph(_inp("q", (C, K)), _inp("v", (C, V)), ("a", Op.EXP, ["q"], {}))
    bad = g.replace([g["q"], g["v"], Node("m", Op.MM, ("q", "v"), (), (C, V))], {"o": "m"})
    with pytest.raises(VerifyError, match="m = mm"):
        verify(bad)


def test_verify_catches_tiles_of_more_than_two_dims():
    g = _graph(_inp("x", (C, K)), ("u", Op.UNSQUEEZE, ["x"], {"dim": 0}))     # make_node allows it
    assert g["u"].shape == (ONE, C, K)
    with pytest.raises(VerifyError, match="at most two dimensions"):
        verify(g)
    with pytest.raises(VerifyError, match="at most two dimensions"):
        verify(_graph(_inp("x", (C, K, V))))


def test_verify_catches_unknown_output():
    g = _graph(_inp("x", (C, K)), ("y", Op.EXP, ["x"], {}))
    with pytest.raises(VerifyError, match="output o refers to unknown node zz"):
        verify(g.replace(outputs={"o": "zz"}))


def test_graph_helpers():
    g = _graph(_inp("x", (C, K)), _inp("y", (C, K)), ("a", Op.EXP, ["x"], {}), ("b", Op.ADD, ["a", "y"], {}),
               ("c", Op.NEG, ["x"], {}), outputs={"o": "b"})
    assert [n.name for n in g.inputs] == ["x", "y"]
    assert g.input("y") is g["y"] and g.input("nope") is None
    assert "a" in g and "zz" not in g
    assert g.ancestors(["b"]) == {"x", "y", "a", "b"}
    assert g.descendants(["x"]) == {"x", "a", "b", "c"}
    sub = g.subgraph({"o": "b"})
    assert [n.name for n in sub.nodes] == ["x", "y", "a", "b"]
    assert g.replace(extra=1).meta == {"name": "g", "extra": 1}


# ---------------------------------------------------------------- printer

LOC = "intra, /tmp/variants/my_variant.py:16: A = q @ k.T"


def test_printer():
    shapes, nodes = {}, []
    for args in [("q", Op.INPUT, [], {"role": "q", "shape": (C, K)}),
                 ("k", Op.INPUT, [], {"role": "k", "shape": (C, K)}),
                 ("kt", Op.TRANSPOSE, ["k"], {}),
                 ("scores", Op.MM, ["q", "kt"], {"operand_dtype": "input"}),
                 ("mask", Op.GT, ["scores", "zero"], {}),
                 ("rows", Op.SUM, ["scores"], {"dims": (1,), "keepdim": False}),
                 ("ones", Op.FULL, [], {"value": 1.0, "shape": (C, V)})]:
        if args[0] == "mask":
            nodes.append(make_node("zero", Op.CONST, [], {"value": 0.0}, shapes))
            shapes["zero"] = ()
        n = make_node(*args, shapes, loc=LOC if args[0] == "scores" else None)
        nodes.append(n)
        shapes[n.name] = n.shape
    text = str(Graph(nodes, {"o": "rows", "m": "mask"}, {"name": "my_kernel"}))
    lines = text.splitlines()
    assert lines[0] == "def my_kernel(q: [C, K], k: [C, K]):"
    assert lines[-1] == "    return dict(o=rows, m=mask)"
    body = {line.split("=")[0].strip(): line for line in lines[1:-1]}
    assert set(body) == {"kt", "scores", "zero", "mask", "rows", "ones"}
    assert "transpose(k)" in body["kt"] and body["kt"].endswith("# [K, C]")
    assert "mm(q, kt, operand_dtype=input)" in body["scores"]
    note = body["scores"].split("#", 1)[1]
    assert note.startswith(" [C, C]") and "intra" in note and "my_variant.py:16" in note
    assert "gt(scores, zero)" in body["mask"] and body["mask"].endswith("# [C, C] bool")
    assert "sum(scores, dims=(1,), keepdim=False)" in body["rows"] and body["rows"].endswith("# [C]")
    assert "const(value=0.0)" in body["zero"] and body["zero"].endswith("# []")
    assert "full(shape=[C, V], value=1.0)" in body["ones"]
