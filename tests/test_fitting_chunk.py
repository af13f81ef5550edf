"""A kernel that does not fit in shared memory (Triton's OutOfResources at launch, GPU only) is
retried at half the chunk size, with the same results; the interpreter never runs out, so the
launcher is made to refuse chunks above 32 here."""
import pytest
import torch
from triton.runtime.errors import OutOfResources, PTXASError

from flexla import ops
from flexla.frontend.errors import DoesNotFit
from flexla.runtime import launch, tuning
from flexla.variants import get
from recurrences import simple_gla_ref
from test_ops import TOL, inputs


def test_too_big_chunk_falls_back_to_a_smaller_one(monkeypatch, rel, capsys):
    chunks = []
    real_run = launch.Launch.run

    def run_refusing_big_chunks(self, kernel, grid, pointers):
        chunks.append(self.consts["BC"])
        if self.consts["BC"] > 32:
            raise OutOfResources(self.consts["BC"] * 4096, 32 * 4096, "shared memory")
        real_run(self, kernel, grid, pointers)

    monkeypatch.setattr(launch.Launch, "run", run_refusing_big_chunks)
    monkeypatch.setattr(launch, "_FITTING_CHUNK", {})
    monkeypatch.setattr(launch, "_CHOSEN", {})
    x = inputs(5)
    xs = [x[n].requires_grad_() for n in ("q", "k", "v", "g")]
    refs = [t.detach().double().requires_grad_() for t in xs]
    o, st = ops.chunk_simple_gla(*xs[:3], g=xs[3], output_final_state=True)       # the variant's chunk: 64
    ro, rst = simple_gla_ref(*refs[:3], g=refs[3], output_final_state=True)
    assert rel(o, ro) < TOL and rel(st, rst) < TOL
    assert chunks[0] == 64 and set(chunks[1:]) == {32}                    # refused, then fitted
    assert "using chunk 32" in capsys.readouterr().err

    chunks.clear()      # the backward finds out for itself, once
    w = torch.randn_like(ro)
    grads = torch.autograd.grad((o * w).sum(), xs)
    ref_grads = torch.autograd.grad((ro * w.double()).sum(), refs)
    assert chunks[0] == 64 and set(chunks[1:]) == {32}
    for a, b in zip(grads, ref_grads):
        assert rel(a, b) < TOL

    chunks.clear()      # both passes remember the chunk that fitted
    o, _ = ops.chunk_simple_gla(*xs[:3], g=xs[3])
    torch.autograd.grad((o * w).sum(), xs)
    assert set(chunks) == {32}


def test_a_chunk_ptxas_cannot_build_falls_back_too(monkeypatch, capsys):
    monkeypatch.setattr(launch, "_FITTING_CHUNK", {})
    monkeypatch.setattr(launch, "_CHOSEN", {})
    asked = []

    def builds_below_64(chunk):
        asked.append(chunk)
        if chunk >= 64:
            raise PTXASError("Internal Triton PTX codegen error")
        return chunk
    assert launch.with_fitting_chunk(builds_below_64, ("v", "backward"), 64) == 32
    assert asked == [64, 32] and "does not build at chunk 64" in capsys.readouterr().err


def test_out_of_resources_at_the_smallest_chunk_is_raised_with_what_to_do(monkeypatch):
    monkeypatch.setattr(launch, "_FITTING_CHUNK", {})
    monkeypatch.setattr(launch, "_CHOSEN", {})

    def never_fits(chunk):
        raise OutOfResources(1 << 20, 1 << 17, "shared memory")
    with pytest.raises(DoesNotFit, match=r"DeltaNet backward at head dims K = 256, V = 256: needs 1048576 bytes "
                       r"of shared memory at chunk 16 .*\n  what to do: use head dims of 128 or less"):
        launch.with_fitting_chunk(never_fits, ("DeltaNet", "backward", "key", 256, 256), 64)


def test_a_way_that_fits_nowhere_leaves_the_search_the_other_ways(monkeypatch):
    """The backward's chunk search times its ways; one that fits at no chunk is skipped, not fatal."""
    monkeypatch.setattr(launch, "_FITTING_CHUNK", {})
    monkeypatch.setattr(launch, "_CHOSEN", {})
    monkeypatch.setattr(tuning, "_remember", lambda key, cfg: None)

    def way(w):
        if w == "whole":
            return launch.with_fitting_chunk(lambda c: (_ for _ in ()).throw(OutOfResources(1, 0, "shared memory")),
                                             ("V", "backward", "key", 256, 256), 32)
        return w
    assert tuning.search("k", ["whole", "split"], way, timer=lambda run: run() and 1.0) == "split"


def test_the_fitting_chunk_is_remembered_per_asked_for_chunk(monkeypatch):
    """The backward's chunk search asks for 64 and then 32: a later call asking for 64 must get 64."""
    monkeypatch.setattr(launch, "_FITTING_CHUNK", {})
    monkeypatch.setattr(launch, "_CHOSEN", {})
    ran = []
    for asked in (64, 32, 64):
        launch.with_fitting_chunk(ran.append, ("V", "backward"), asked)
    assert ran == [64, 32, 64]


def _forward_search_preferring(monkeypatch, chunk: int):
    """Fakes the GPU's forward chunk search: the way whose kernels all ran at `chunk` times
    fastest. Returns what the search remembers and the chunks the last run launched at."""
    monkeypatch.setattr(launch, "_FITTING_CHUNK", {})
    monkeypatch.setattr(launch, "_CHOSEN", {})
    monkeypatch.setattr(launch, "searches_chunk", lambda q, v, chunk, schedule: chunk >= 32)
    remembered, chunks = {}, []
    monkeypatch.setattr(tuning, "_remember", remembered.__setitem__)
    real_run, real_search = launch.Launch.run, tuning.search

    def run_noting_chunks(self, kernel, grid, pointers):
        chunks.append(self.consts["BC"])
        real_run(self, kernel, grid, pointers)

    def preferred_is_faster(run):
        chunks.clear()
        run()
        return 1.0 if set(chunks) == {chunk} else 2.0
    def searching(key, *a, **kw):
        if not (key and "forward chunk" in key):
            return real_search(key, *a, **kw)
        best = real_search(key, *a, **dict(kw, timer=preferred_is_faster))
        chunks.clear()                          # what the chosen way then launches
        return best
    monkeypatch.setattr(launch.Launch, "run", run_noting_chunks)
    monkeypatch.setattr(tuning, "search", searching)
    return remembered, chunks


def test_the_forward_times_its_chunk_against_half_of_it(monkeypatch, rel):
    """On the GPU (faked here) the chunk-parallel forward times the variant's chunk and half of it
    once per shape bucket, remembers the faster, and runs it: same results either way."""
    remembered, chunks = _forward_search_preferring(monkeypatch, 32)
    x = inputs(5)
    o, _ = ops.chunk_simple_gla(x["q"], x["k"], x["v"], g=x["g"])
    assert set(chunks) == {32}
    (key, chosen), = [(k, c) for k, c in remembered.items() if "forward chunk" in k]
    assert chosen == (32, None)
    ro, _ = simple_gla_ref(*(x[n].double() for n in ("q", "k", "v")), g=x["g"].double())
    assert rel(o, ro) < TOL


def test_a_later_call_takes_the_chosen_way_without_searching(monkeypatch):
    """The way a pass at one call shape took is kept in-process: a second call neither builds
    the search's keys nor asks tuning.search, and runs at the same chunk."""
    remembered, chunks = _forward_search_preferring(monkeypatch, 32)
    x = inputs(5)
    ops.chunk_simple_gla(x["q"], x["k"], x["v"], g=x["g"])
    searched, real_search = [], tuning.search

    def noting_search(key, *a, **kw):
        if key and "forward chunk" in key:
            searched.append(key)
        return real_search(key, *a, **kw)
    monkeypatch.setattr(tuning, "search", noting_search)
    chunks.clear()
    ops.chunk_simple_gla(x["q"], x["k"], x["v"], g=x["g"])
    assert searched == [] and set(chunks) == {32}


def test_the_forward_times_twice_its_chunk_too(monkeypatch, rel):
    """The forward's search also times twice the variant's chunk, last (where FLEXLA_TUNE=last
    checks it), and names the ways it chose among in its key; picked, it runs and is right."""
    remembered, chunks = _forward_search_preferring(monkeypatch, 128)
    q, v = torch.zeros(1, 8, 1, 16), torch.zeros(1, 8, 1, 136)
    assert launch.forward_ways({"v_split": True, "staged": []}, q, v, 64, None) == [
        (64, None), (32, None), (128, None), (64, True), (32, True), (128, True)]
    assert launch.forward_ways({"v_split": True, "staged": []}, q, v[..., :128], 64, None)[-1] == (128, None)
    gen = torch.Generator().manual_seed(3)
    B, T, H, K, V = 1, 300, 2, 16, 24          # three chunks of 128, the last one partial
    q, k, v = (torch.randn(B, T, H, d, generator=gen) for d in (K, K, V))
    g = torch.nn.functional.logsigmoid(torch.randn(B, T, H, generator=gen) + 2) / 4
    o, _ = ops.chunk_simple_gla(q, k, v, g=g)
    assert set(chunks) == {128}
    (key, chosen), = [(k, c) for k, c in remembered.items() if "forward chunk" in k]
    assert chosen == (128, None)
    assert "[(64, None), (32, None), (128, None)]" in key      # not a choice made among fewer ways
    ro, _ = simple_gla_ref(q.double(), k.double(), v.double(), g=g.double())
    assert rel(o, ro) < TOL


def test_the_forward_also_times_the_output_split_where_v_is_wide(monkeypatch, rel):
    """Where V is wider than 128 the forward's search also times each chunk with the output kernel
    split along V (forward_ways); the way it picks is the way that runs: same results."""
    monkeypatch.setattr(launch, "_FITTING_CHUNK", {})
    monkeypatch.setattr(launch, "_CHOSEN", {})
    monkeypatch.setattr(launch, "searches_chunk", lambda q, v, chunk, schedule: chunk >= 32)
    q, v = torch.zeros(1, 8, 1, 16), torch.zeros(1, 8, 1, 136)
    splits_v = {"v_split": True, "staged": []}
    assert launch.forward_ways(splits_v, q, v, 64, None) == [
        (64, None), (32, None), (128, None), (64, True), (32, True), (128, True)]
    assert launch.forward_ways(splits_v, q, v[..., :128], 64, None) == [(64, None), (32, None), (128, None)]
    assert launch.forward_ways({"v_split": False, "staged": []}, q, v, 64, None) == [(64, None), (32, None), (128, None)]
    stages_a_matrix = {"v_split": False, "staged": [("transpose_10", ("K", "C"), True)]}
    assert launch.forward_ways(stages_a_matrix, q, v, 64, None) == [(64, None), (32, None)]
    splits, real_output_launch, real_search = [], launch.output_launch, tuning.search

    def noting_split(*a, **kw):
        out = real_output_launch(*a, **kw)
        splits.append(out.NV > 1)
        return out

    def split_is_faster(run):
        splits.clear()
        run()
        return 1.0 if splits == [True] else 2.0
    monkeypatch.setattr(launch, "output_launch", noting_split)
    monkeypatch.setattr(tuning, "_remember", lambda key, best: None)
    monkeypatch.setattr(tuning, "search", lambda key, *a, **kw: real_search(
        key, *a, **(dict(kw, timer=split_is_faster) if key and "forward chunk" in key else kw)))
    gen = torch.Generator().manual_seed(5)
    B, T, H, K, V = 1, 40, 1, 16, 136
    q, k, v = (torch.randn(B, T, H, d, generator=gen) for d in (K, K, V))
    g = torch.nn.functional.logsigmoid(torch.randn(B, T, H, generator=gen) + 2) / 4
    variant = get("simple_gla")
    old, variant.schedule = variant.schedule, "chunk"
    try:
        o, _ = variant(q, k, v, g)
    finally:
        variant.schedule = old
    assert splits[-1] is True
    ro, _ = simple_gla_ref(q.double(), k.double(), v.double(), g=g.double())
    assert rel(o, ro) < TOL


def test_a_forward_chunk_remembered_before_the_split_ways_still_runs(monkeypatch, rel):
    """Tuning tables written before the forward's ways became (chunk, output split) pairs hold a
    plain chunk: it still runs."""
    monkeypatch.setattr(launch, "_FITTING_CHUNK", {})
    monkeypatch.setattr(launch, "_CHOSEN", {})
    monkeypatch.setattr(launch, "searches_chunk", lambda q, v, chunk, schedule: chunk >= 32)
    real_decided, real_run, chunks = tuning._decided, launch.Launch.run, []
    monkeypatch.setattr(tuning, "_decided", lambda key, cands: 32 if key and "forward chunk" in key
                        else real_decided(key, cands))

    def run_noting_chunks(self, kernel, grid, pointers):
        chunks.append(self.consts["BC"])
        real_run(self, kernel, grid, pointers)
    monkeypatch.setattr(launch.Launch, "run", run_noting_chunks)
    x = inputs(5)
    o, _ = ops.chunk_simple_gla(x["q"], x["k"], x["v"], g=x["g"])
    assert set(chunks) == {32}
    ro, _ = simple_gla_ref(*(x[n].double() for n in ("q", "k", "v")), g=x["g"].double())
    assert rel(o, ro) < TOL
