"""Renders a module of Triton kernels from the Jinja templates in templates/."""
from __future__ import annotations

import pprint
from pathlib import Path

import jinja2

TEMPLATES = Path(__file__).parent / "templates"
_env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                          keep_trailing_newline=True)


def as_comment(text: str) -> str:
    return "\n".join("# " + line for line in text.splitlines())


def render_module(*, variant: str, key: str, version: str, forward_ir: str, backward_ir: str,
                  kernels: list, meta: dict) -> str:
    source = _env.get_template("module.py.jinja").render(
        variant=variant, key=key, version=version, forward_ir=as_comment(forward_ir),
        backward_ir=as_comment(backward_ir) if backward_ir else "", kernels=kernels,
        meta=pprint.pformat(meta, width=100, sort_dicts=True))
    # collapse the blank lines the template control flow leaves behind
    out, blank = [], 0
    for line in source.splitlines():
        blank = blank + 1 if not line.strip() else 0
        if blank <= 2:
            out.append(line.rstrip())
    return "\n".join(out) + "\n"
