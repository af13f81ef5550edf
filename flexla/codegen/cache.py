"""The on-disk cache of generated modules: <cache dir>/<key>.py, written atomically, loaded with
importlib (Triton reads kernel source with `inspect`, so the code must live in a real file).

A file that is truncated or does not import is rebuilt, never fatal. `<key>.alias` files map a
key computed without tracing (frontend/source_key.py) to a module's key.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

END_MARK = "# flexla-end "


def cache_dir() -> Path:
    d = Path(os.environ.get("FLEXLA_CACHE_DIR") or Path.home() / ".cache" / "flexla")
    d.mkdir(parents=True, exist_ok=True)
    return d


def path_for(key: str) -> Path:
    return cache_dir() / f"{key}.py"


def load(key: str):
    """The cached module for key, or None when it is missing, truncated or broken."""
    path = path_for(key)
    try:
        text = path.read_text()
    except OSError:
        return None
    if not text.rstrip().endswith(END_MARK + key):
        return None
    name = f"flexla_generated_{key}"
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception:
        return None
    sys.modules[name] = module
    return module


def store(key: str, source: str) -> Path:
    return write_atomically(path_for(key), source)


def write_atomically(path: Path, text: str) -> Path:
    """Readers see the old file or the whole new one, never a partial write."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def read_alias(alias: str) -> str | None:
    try:
        return (cache_dir() / f"{alias}.alias").read_text().strip() or None
    except OSError:
        return None


def write_alias(alias: str, key: str) -> None:
    write_atomically(cache_dir() / f"{alias}.alias", key)
