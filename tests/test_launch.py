"""Launch-time choices: the block sizes of a launch, and the state scans split along K."""
import pytest

import torch

from flexla import ops
from flexla.runtime import launch
from flexla.runtime.launch import block_sizes
from flexla.variants import get


@pytest.mark.parametrize("args, expected", [
    ((64, 128, 128, False), {"BC": 64, "BK": 128, "BV": 128, "NK": 1, "NV": 1}),
    ((64, 128, 128, True), {"BC": 64, "BK": 128, "BV": 64, "NK": 1, "NV": 2}),
    ((64, 100, 100, False), {"BC": 64, "BK": 128, "BV": 128, "NK": 1, "NV": 1}),
    ((64, 100, 100, True), {"BC": 64, "BK": 128, "BV": 64, "NK": 1, "NV": 2}),
    ((32, 8, 8, True), {"BC": 32, "BK": 16, "BV": 16, "NK": 1, "NV": 1}),       # both 16: kept
    ((64, 64, 200, True), {"BC": 64, "BK": 64, "BV": 64, "NK": 1, "NV": 4}),
    ((64, 64, 32, False), {"BC": 64, "BK": 64, "BV": 64, "NK": 1, "NV": 1}),     # no 32-wide tiles
    ((64, 16, 128, False), {"BC": 64, "BK": 64, "BV": 128, "NK": 1, "NV": 1}),   # nor 16 next to 128
])
def test_block_sizes(args, expected):
    assert block_sizes(*args) == expected


def test_block_sizes_max_bv(monkeypatch):
    assert block_sizes(64, 64, 200, True, max_bv=32) == {"BC": 64, "BK": 64, "BV": 64, "NK": 1, "NV": 4}
    assert block_sizes(64, 64, 200, False, max_bv=32)["BV"] == 256
    monkeypatch.setattr(launch, "NARROW_TILES", True)
    assert block_sizes(64, 64, 200, True, max_bv=32) == {"BC": 64, "BK": 64, "BV": 32, "NK": 1, "NV": 7}
    assert block_sizes(64, 64, 32, False)["BV"] == 32


def test_block_sizes_max_bk():
    assert block_sizes(64, 100, 128, True, max_bk=64) == {"BC": 64, "BK": 64, "BV": 64, "NK": 2, "NV": 2}
    assert block_sizes(64, 256, 128, False, max_bk=64)["NK"] == 4


def _inputs(name, B=1, T=40, H=2, K=24, V=20):
    """Inputs and a call for each variant of the K-split test."""
    gen = torch.Generator().manual_seed(5)
    r = lambda *s: torch.randn(*s, generator=gen)
    q, k, v = r(B, T, H, K), r(B, T, H, K), r(B, T, H, V)
    log_decay = torch.nn.functional.logsigmoid(r(B, T, H, K) + 2) / 4
    if name == "mlstm":
        return [q, k, v, r(B, T, H), r(B, T, H) + 3, r(B, H, K, V), r(B, H, K)], \
            lambda q, k, v, i, f, C0, n0: ops.chunk_mlstm(q, k, v, i, f, initial_state=(C0, n0), output_final_state=True)
    beta, g = torch.rand(B, T, H, generator=gen), torch.nn.functional.logsigmoid(r(B, T, H) + 2) / 4
    extras = {"gla": [log_decay], "rwkv6": [log_decay, 0.5 * r(H, K)], "delta_rule": [beta],
              "gated_delta_rule": [g, beta], "kda": [log_decay, beta]}
    if name in ("delta_rule", "gated_delta_rule", "kda"):
        k = torch.nn.functional.normalize(k, dim=-1)
    variant = get(name)
    return [q, k, v, *extras[name], r(B, H, K, V)], \
        lambda *xs: variant(*xs[:-1], initial_state=xs[-1], output_final_state=True)


def _whole_then_changed(name, inputs_and_call, change, monkeypatch):
    """Outputs, final states and gradients of variant `name` on the chunk schedule at chunk 16, as
    launched by default and then on more SMs than programs with `change(monkeypatch)` applied."""
    inputs, call = inputs_and_call

    def run():
        xs = [x.detach().clone().requires_grad_() for x in inputs]
        o, ht = call(*xs)
        hts = ht if isinstance(ht, (tuple, list)) else [ht]
        (o.square().sum() + sum(h.sum() for h in hts)).backward()
        return [o, *hts, *(x.grad for x in xs)]
    variant = get(name)
    old = variant.schedule, variant.chunk_size
    variant.schedule, variant.chunk_size = "chunk", 16
    try:
        whole = run()
        monkeypatch.setattr(launch, "sm_count", lambda device: 1000)
        change(monkeypatch)
        return whole, run()
    finally:
        variant.schedule, variant.chunk_size = old


@pytest.mark.parametrize("name", ["gla", "mlstm", "rwkv6", "delta_rule"])   # delta_rule: K not separable
def test_scans_split_along_k_give_the_same_results(name, monkeypatch, rel):
    """With more SMs than scan programs, the scans of separable variants split K (here into two
    slices of 16, K = 24 so the second is partial); outputs, final states and gradients match the
    unsplit launch."""
    def split(monkeypatch):
        monkeypatch.setattr(launch, "SCAN_BK", 16)
        monkeypatch.setattr(launch, "NARROW_TILES", True)         # slices of 16 on the interpreter
    whole, split = _whole_then_changed(name, _inputs(name), split, monkeypatch)
    assert get(name).compile().meta["k_split"] == (name != "delta_rule")
    for a, b in zip(split, whole):
        assert rel(a, b) < 1e-5


@pytest.mark.parametrize("B, H, NK", [(8, 16, 1), (2, 16, 4), (1, 16, 4), (1, 64, 2)])
def test_scan_splits_k_until_every_sm_has_a_program(B, H, NK, monkeypatch):
    """On 132 SMs with K = V = 128 (V in two slices), slices down to 32 wide: 256 programs need no
    K split; 64 take four K slices (256); 32 stop at the narrowest slice (four, 128 programs); 128
    take two."""
    monkeypatch.setattr(launch, "sm_count", lambda device: 132)
    monkeypatch.setattr(launch, "SCAN_BK", 32)
    monkeypatch.setattr(launch, "NARROW_TILES", True)
    q, v = torch.zeros(B, 64, H, 128), torch.zeros(B, 64, H, 128)
    scan = launch.scan_launch(get("gla").compile(), q, v, 64, 1.0, False, False, "forward")
    assert (scan.NK, scan.NV, scan.consts["BK"]) == (NK, 2, 128 // NK)
    assert launch.scan_launch(get("delta_rule").compile(), q, v, 64, 1.0, False, False, "forward").NK == 1
    monkeypatch.setattr(launch, "SCAN_BK", 64)                # the default: slices of 64 at most
    assert launch.scan_launch(get("gla").compile(), q, v, 64, 1.0, False, False, "forward").NK == min(NK, 2)


def test_scan_narrows_its_v_slices_down_to_scan_bv_where_sms_are_idle(monkeypatch):
    """A scan that cannot split K, the delta rule's, takes more programs from V instead: 32 programs
    at (1, 16 heads, V = 128) become 64 in slices of 32 (SCAN_BV) on 132 SMs, where 256 programs
    stay as they were; a scan that splits K keeps V slices of 64; no other kernel narrows."""
    monkeypatch.setattr(launch, "sm_count", lambda device: 132)
    compiled = get("delta_rule").compile()
    scan = lambda B, c=compiled: launch.scan_launch(c, torch.zeros(B, 64, 16, 128), torch.zeros(B, 64, 16, 128),
                                                    64, 1.0, False, False, "forward")
    assert (scan(1).NV, scan(1).consts["BV"], scan(1).NK) == (4, 32, 1)
    assert scan(8).consts["BV"] == 64
    gla = scan(1, get("gla").compile())
    assert (gla.NK, gla.consts["BV"]) == (2, 64)
    monkeypatch.setattr(launch, "SCAN_BV", 64)                               # FLEXLA_SCAN_BV=64: never narrower
    assert (scan(1).NV, scan(1).consts["BV"]) == (2, 64)
    assert block_sizes(64, 128, 128, True, max_bv=32)["BV"] == 64            # elsewhere still 64 at least


@pytest.mark.parametrize("name", ["delta_rule", "gated_delta_rule", "kda"])
def test_scans_in_narrow_v_slices_give_the_same_results(name, monkeypatch, rel):
    """Scans (forward, and backward) in V slices of 32 against whole ones."""
    inputs, call = _inputs(name, K=64, V=64)

    def narrow(monkeypatch):
        monkeypatch.setattr(launch, "SCAN_BV", 32)
        assert launch.scan_launch(get(name).compile(), inputs[0], inputs[2], 16, 1.0, True, True, "backward").NV == 2
    whole, narrow = _whole_then_changed(name, (inputs, call), narrow, monkeypatch)
    for a, b in zip(narrow, whole):
        assert rel(a, b) < 1e-5


def test_scans_split_along_k_at_the_default_slices(monkeypatch, rel):
    """K = V = 128 in two K slices of 64 (what the GPU runs for few heads), forward and backward
    scans, against the float64 recurrence."""
    from recurrences import gla_ref
    monkeypatch.setattr(launch, "sm_count", lambda device: 1000)
    gen = torch.Generator().manual_seed(3)
    r = lambda *s: torch.randn(*s, generator=gen)
    inputs = [r(1, 40, 1, 128), r(1, 40, 1, 128), r(1, 40, 1, 128),
              torch.nn.functional.logsigmoid(r(1, 40, 1, 128) + 2) / 4, r(1, 1, 128, 128)]
    variant = get("gla")
    old = variant.schedule, variant.chunk_size
    variant.schedule, variant.chunk_size = "chunk", 16
    try:
        assert launch.scan_launch(variant.compile(), inputs[0], inputs[2], 16, 1.0, True, True, "backward").NK == 2
        xs = [x.clone().requires_grad_() for x in inputs]
        o, ht = variant(*xs[:4], initial_state=xs[4], output_final_state=True)
        (o.square().sum() + ht.sum()).backward()
    finally:
        variant.schedule, variant.chunk_size = old
    xr = [x.double().requires_grad_() for x in inputs]
    ro, rht = gla_ref(*xr[:4], initial_state=xr[4], output_final_state=True)
    (ro.square().sum() + rht.sum()).backward()
    assert rel(o, ro) < 1e-5 and rel(ht, rht) < 1e-5
    for a, b in zip(xs, xr):
        assert rel(a.grad, b.grad) < 1e-5


@pytest.mark.parametrize("K, V, cuda_cores", [(1, 1, True), (16, 8, True), (16, 32, False), (64, 64, False)])
def test_sixteen_wide_tiles_multiply_in_fp32(K, V, cuda_cores):
    """Where both head dims fit 16-wide tiles, the products run in fp32 "ieee" (off the tensor
    cores, whose path failed at narrow tiles on the H200); wider ones keep the inputs' dtype."""
    q, v = torch.zeros(1, 32, 2, K, dtype=torch.float16), torch.zeros(1, 32, 2, V, dtype=torch.float16)
    L = launch.Launch(get("linear_attn").compile().meta, q, v, 16, 1.0, False, False)
    assert (L.consts["DOT_DTYPE"] == launch.tl.float32) == cuda_cores
    assert (L.consts["DOT_PRECISION"] == "ieee") == cuda_cores
