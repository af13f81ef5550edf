"""Splitting the gradient kernel by outputs (passes/split_by_output.py)."""
from flexla.ir import C, K, V, Op
from flexla.passes.partition import grad_kernels, partition_backward
from flexla.passes.split_by_output import output_groups
from graphs import GraphBuilder


def _separate_products():
    """dv = A^T do and dq = (do v^T) k: no product in common, as in GLA's gradients."""
    b = GraphBuilder()
    q, k, v, do = b.input("q", (C, K)), b.input("k", (C, K)), b.input("v", (C, V)), b.input("do", (C, V))
    A = b.add(Op.MM, q, b.add(Op.TRANSPOSE, k))
    dv = b.add(Op.MM, b.add(Op.TRANSPOSE, A), do)
    dA = b.add(Op.MM, do, b.add(Op.TRANSPOSE, v))
    dq = b.add(Op.MM, dA, k)
    dk = b.add(Op.MM, b.add(Op.TRANSPOSE, dA), q)
    return b, dict(dq=dq, dk=dk, dv=dv), A


def test_outputs_without_shared_work_split_evenly():
    b, outs, _ = _separate_products()
    groups = output_groups(b.build(**outs))
    assert groups == [{"dq": outs["dq"], "dk": outs["dk"]}, {"dv": outs["dv"]}]


def test_outputs_through_shared_work_stay_together():
    """Every gradient needs the same [C, C] product (as the delta rules' solves): no split."""
    b, outs, A = _separate_products()
    outs["dq"] = b.add(Op.ADD, outs["dq"], b.add(Op.MM, A, k := "k"))
    outs["dk"] = b.add(Op.ADD, outs["dk"], b.add(Op.MM, b.add(Op.TRANSPOSE, A), k))
    graph = b.build(**outs)
    assert output_groups(graph) == [graph.outputs]
    assert len(output_groups(graph, "1")) == 2          # forced: split anyway
    assert output_groups(b.build(**outs), "0") == [graph.outputs]


def test_backward_partition_keeps_the_whole_gradient_kernel_beside_the_split():
    b, outs, _ = _separate_products()
    dS = b.input("dS_next", (K, V))
    plans = partition_backward(b.build(**outs, dS=b.add(Op.MUL, dS, b.const(2.0))).replace(states=["dS_next"]))
    assert list(plans) == ["bwd", "bwd_states", "bwd_grads", "bwd_grads_dq_dk", "bwd_grads_dv"]
    assert grad_kernels(plans) == ["bwd_grads_dq_dk", "bwd_grads_dv"]
    assert list(plans["bwd_grads"].graph.outputs) == ["dq", "dk", "dv"]
    dv = plans["bwd_grads_dv"]
    assert list(dv.graph.outputs) == ["dv"] and dv.role == "bwd_grads"
    assert len(dv.phases["grad"]) == 4 and {dv.graph[n].op for n in dv.phases["grad"]} == {Op.MM, Op.TRANSPOSE}
    assert grad_kernels(partition_backward(b.build(**outs), "0")) == []



def test_a_split_whose_kernels_can_both_be_sliced_wins():
    """d_u = sum over V of do * v (a [C] sum, as RWKV-6's bonus gradient) costs next to nothing: with
    dv it would keep V whole in dv's kernel; with dq and dk both kernels may be sliced."""
    b, outs, _ = _separate_products()
    d_u = b.add(Op.SUM, b.add(Op.MUL, b.input("do2", (C, V)), b.input("v2", (C, V))), dims=(1,), keepdim=False)
    groups = output_groups(b.build(dq=outs["dq"], dk=outs["dk"], dv=outs["dv"], d_u=d_u))
    assert [sorted(g) for g in groups] == [["d_u", "dk", "dq"], ["dv"]]
