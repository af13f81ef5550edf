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
