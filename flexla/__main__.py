"""Command line: `python -m flexla show NAME` prints the generated Triton source of a shipped variant;
`python -m flexla ir NAME` prints its forward and backward IR; `python -m flexla list` lists them."""
from __future__ import annotations

import argparse
import sys

from . import variants


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flexla", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the shipped variants")
    for cmd, text in (("show", "print the generated Triton source"), ("path", "print where it is cached"),
                      ("ir", "print the optimised forward and backward IR")):
        p = sub.add_parser(cmd, help=text)
        p.add_argument("name", help=f"a module of flexla/variants: {', '.join(variants.NAMES)}")
    args = parser.parse_args(argv)
    if args.command == "list":
        print("\n".join(variants.NAMES))
        return 0
    try:
        variant = variants.get(args.name)
    except KeyError as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    compiled = variant.compile()
    if args.command == "show":
        print(compiled.source, end="")
    elif args.command == "path":
        print(compiled.path)
    else:
        from .compiler import build_graphs
        fwd, bwd = build_graphs(variant.name, variant.callbacks, [e for e in compiled_extras(variant)],
                                variant.states)
        print(fwd, bwd, sep="\n\n")
    return 0


def compiled_extras(variant):
    from .frontend.signature import Extra
    return [Extra(n, variant.declared[n]) for n in variant.extra_names]


if __name__ == "__main__":
    sys.exit(main())
