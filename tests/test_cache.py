"""The on-disk kernel cache: reused across processes, rebuilt when damaged, keyed on the callbacks."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import flexla

SCRIPT = textwrap.dedent("""
    import os, torch
    os.environ["TRITON_INTERPRET"] = "1"
    from flexla.variants import get
    v = get("simple_gla")
    q = torch.randn(1, 20, 2, 16)
    o, _ = v(q, q, q, -torch.rand(1, 20, 2))
    c = next(iter(v._compiled.values()))
    print("FROM_CACHE", c.from_cache, c.path)
""")


def run(cache_dir):
    env = {**os.environ, "FLEXLA_CACHE_DIR": str(cache_dir)}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out


def test_second_process_reuses_the_module(tmp_path):
    first = run(tmp_path)
    assert "FROM_CACHE False" in first.stdout and "flexla: compiling" in first.stderr
    path = first.stdout.split()[-1]
    assert os.path.dirname(path) == str(tmp_path)          # FLEXLA_CACHE_DIR moves the cache
    second = run(tmp_path)
    assert "FROM_CACHE True" in second.stdout and "compiling" not in second.stderr
    assert second.stdout.split()[-1] == path


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_file_is_rebuilt(tmp_path, damage):
    path = run(tmp_path).stdout.split()[-1]
    text = open(path).read()
    with open(path, "w") as f:
        f.write({"truncate": text[: len(text) // 2], "garbage": "def (:\n" + text, "empty": ""}[damage])
    again = run(tmp_path)
    assert "FROM_CACHE False" in again.stdout
    assert open(path).read() == text


def test_key_follows_the_callbacks_and_their_closures(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEXLA_CACHE_DIR", str(tmp_path))

    def variant(decay):
        class V:
            def intra(q, k, v):
                return dict(o=(q @ k.T).tril() @ v, q=q, kv=k.T @ v)

            def update(S, c):
                return S * decay + c["kv"]

            def merge(S, c):
                return c["o"] + c["q"] @ S
        if decay == 1.0:
            V.update = lambda S, c: S + c["kv"]
        return flexla.linear_attention(V)

    a, b, c = variant(0.5).compile([]), variant(0.25).compile([]), variant(1.0).compile([])
    assert len({a.key, b.key, c.key}) == 3          # a closure's value is part of the key
    assert variant(0.5).compile([]).from_cache


# -- the warm key: found without tracing (frontend/source_key.py) ---------------------------------

DECAY = 0.5


def _helper(S):
    return S * DECAY


def _module_level_variant():
    class V:
        def intra(q, k, v):
            return dict(o=(q @ k.T).tril() @ v, q=q, kv=k.T @ v)

        def update(S, c):
            return _helper(S) + c["kv"]

        def merge(S, c):
            return c["o"] + c["q"] @ S
    return flexla.linear_attention(V)


def test_warm_process_does_not_trace(tmp_path, monkeypatch):
    from flexla import compiler
    monkeypatch.setenv("FLEXLA_CACHE_DIR", str(tmp_path))
    first = _module_level_variant().compile([])

    def no_tracing(*a, **kw):
        raise AssertionError("traced although the warm key was in the cache")
    monkeypatch.setattr(compiler, "build_graphs", no_tracing)
    again = _module_level_variant().compile([])          # a new Variant: nothing held in memory
    assert again.from_cache and again.key == first.key


def test_warm_key_sees_globals_helpers_and_closures(monkeypatch):
    from flexla.frontend.source_key import source_key
    cbs = lambda: dict(_module_level_variant().callbacks)
    base = source_key(cbs())
    assert base is not None and base == source_key(cbs())
    monkeypatch.setattr(sys.modules[__name__], "DECAY", 0.25)      # a global the helper reads
    assert source_key(cbs()) != base
    monkeypatch.setattr(sys.modules[__name__], "DECAY", 0.5)
    monkeypatch.setattr(sys.modules[__name__], "_helper", lambda S: S * 0.5)   # the helper itself
    assert source_key(cbs()) != base

    def closing_over(x):
        return dict(update=lambda S, c: S * x + c["kv"])
    assert source_key(closing_over(0.5)) != source_key(closing_over(0.25))
    assert source_key(closing_over(torch.ones(3))) != source_key(closing_over(torch.zeros(3)))
    assert source_key(closing_over(torch.tensor(1.0))) != source_key(closing_over(torch.tensor(2.0)))


def test_warm_key_sees_into_a_variant_whose_callbacks_another_reuses(monkeypatch):
    """Retention's intra calls simple GLA's: the warm key digests that variant's callbacks (it used
    to give up there, so every warm process traced retention again: a 5 s warm start on an H200)."""
    from flexla.frontend.source_key import source_key
    from flexla.variants import get
    from flexla.variants import simple_gla
    key = source_key(get("retention").callbacks)
    assert key is not None and key == source_key(get("retention").callbacks)
    changed = dict(simple_gla.SimpleGLA.callbacks, intra=lambda q, k, v, g: None)
    monkeypatch.setattr(simple_gla.SimpleGLA, "callbacks", changed)
    assert source_key(get("retention").callbacks) != key


def test_warm_key_gives_up_on_what_it_cannot_see(tmp_path, monkeypatch):
    """An object of a user class could change without its identity changing: no warm key, so the
    variant is traced and keyed on its graphs, and a changed attribute is never served stale."""
    from flexla.frontend.source_key import source_key
    monkeypatch.setenv("FLEXLA_CACHE_DIR", str(tmp_path))

    class Config:
        decay = 0.5
    cfg = Config()

    def variant():
        class V:
            def intra(q, k, v):
                return dict(o=(q @ k.T).tril() @ v, q=q, kv=k.T @ v)

            def update(S, c):
                return S * cfg.decay + c["kv"]

            def merge(S, c):
                return c["o"] + c["q"] @ S
        return flexla.linear_attention(V)
    assert source_key(variant().callbacks) is None
    a = variant().compile([])
    cfg.decay = 0.25
    b = variant().compile([])
    assert a.key != b.key and not b.from_cache


def test_warm_process_imports_no_compiler(tmp_path):
    """A process that finds its module on disk loads and runs it without importing the compiler
    (its IR pulls in sympy: half a second of every warm start)."""
    code = textwrap.dedent("""
        import sys, torch
        import flexla.ops as fx
        q = torch.randn(1, 20, 2, 16)
        fx.chunk_simple_gla(q, q, q, -torch.rand(1, 20, 2))
        print(sorted(m for m in ("sympy", "flexla.compiler", "flexla.ir") if m in sys.modules))
    """)
    env = {**os.environ, "FLEXLA_CACHE_DIR": str(tmp_path), "TRITON_INTERPRET": "1"}
    run = lambda: subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "flexla.compiler" in run().stdout          # cold: compiles
    assert run().stdout.strip() == "[]"               # warm: nothing of the compiler
