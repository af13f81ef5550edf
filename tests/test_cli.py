"""`python -m flexla show NAME` prints the generated kernels of a shipped variant."""
import os
import subprocess
import sys


def flexla(*args):
    return subprocess.run([sys.executable, "-m", "flexla", *args], capture_output=True, text=True, timeout=300,
                          env=os.environ.copy())


def test_show_prints_forward_and_backward_kernels():
    out = flexla("show", "simple_gla")
    assert out.returncode == 0, out.stderr
    for kernel in ("def fused_fwd(", "def chunk_states(", "def chunk_output(", "def bwd("):
        assert kernel in out.stdout
    assert "@triton.jit" in out.stdout and "# Forward IR" in out.stdout and "# Backward IR" in out.stdout


def test_the_source_and_the_log_name_the_variant():
    """The delta rule's backward stages the forward's tensors (passes/forward_staged.py): the
    header and the compile log still name the variant, not one of those tensors."""
    out = flexla("show", "delta_rule")
    assert out.returncode == 0, out.stderr
    assert "for the variant `DeltaNet`" in out.stdout
    assert "compiled DeltaNet in" in out.stderr or "compiled" not in out.stderr     # a warm cache logs nothing


def test_list_and_unknown_name():
    assert set(flexla("list").stdout.split()) >= {"linear_attn", "retention", "simple_gla", "gla"}
    bad = flexla("show", "nope")
    assert bad.returncode == 2 and "no shipped variant 'nope'" in bad.stderr


def test_ir_prints_both_graphs():
    out = flexla("ir", "gla")
    assert out.returncode == 0, out.stderr
    assert "def GLA_forward(" in out.stdout and "def GLA_backward(" in out.stdout
    two = flexla("ir", "mlstm")                       # two states: a matrix memory and a normaliser
    assert two.returncode == 0 and "S1: [K]" in two.stdout, two.stderr
