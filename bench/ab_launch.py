"""A/B of one of the launcher's knobs (a number in runtime/launch.py that it reads per launch, and
FLEXLA_<knob> sets), side by side with FLA in one process (GPU only): flexla at each value on the
same inputs, FLA timed once per row; the rows (with the knob's value under its lower-case name)
go to results<tag>.json. E.g. the state scans' narrowest K slice, or the prep kernels that walk K
from which head dim on:

    python bench/ab_launch.py --knob SCAN_BK --values 64,32 --ops chunk_simple_gla --shapes few_heads --tag _run181
    python bench/ab_launch.py --knob PREP_K_LOOP --values 1,0 --ops chunk_kda --shapes d256 --tag _run186

Kernels are compiled first, one child process per (op, value), as gpu_run.py does. The forward's
chunk search remembers its choice per shape, not per value: the second value runs at the chunk the
first chose.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parent.parent)]
import gpu_run  # noqa: E402
from flexla.runtime import launch  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ops", required=True)
    p.add_argument("--shapes", default="few_heads", choices=sorted(gpu_run.SHAPES))
    p.add_argument("--modes", default="fwd")
    p.add_argument("--knob", required=True, help="the launcher's knob, e.g. SCAN_BK")
    p.add_argument("--values", required=True, help="its values to time, comma-separated integers")
    p.add_argument("--fla-ops", default="", help="ops to time FLA on too")
    p.add_argument("--tag", default="_ab")
    p.add_argument("--budget", type=float, default=500, help="seconds from the start after which timing stops")
    p.add_argument("--warm-s", type=float, default=200, help="cap on the parallel compile")
    p.add_argument("--dry", action="store_true", help="tiny shapes on the CPU interpreter, to test the script")
    args = p.parse_args()
    ops, values, modes = args.ops.split(","), [int(b) for b in args.values.split(",")], args.modes.split(",")
    knob, key = args.knob, args.knob.lower()
    if not isinstance(getattr(launch, knob, None), int):
        sys.exit(f"ab_launch: runtime/launch.py has no integer knob {knob}")
    if args.dry:
        device, dtype, shapes, do_bench = "cpu", torch.float16, [(1, 64, 2, 16, 16)], lambda fn, **kw: 1.0
    else:
        from triton.testing import do_bench
        device, dtype, shapes = "cuda", torch.bfloat16, gpu_run.SHAPES[args.shapes]
    pairs = [(op, value) for value in values for op in ops]
    gpu_run.log(f"compiling {len(pairs)} (op, {knob}) pairs")
    outs = gpu_run.in_parallel([["env", f"FLEXLA_{knob}={value}", sys.executable, gpu_run.__file__, "--warm-one", op,
                                 "--shapes", args.shapes, "--modes", args.modes, "--fla-ops", ""]
                                + (["--dry"] if args.dry else []) for op, value in pairs], len(pairs), args.warm_s)
    for (op, value), out in zip(pairs, outs):
        if out.returncode:
            gpu_run.log(f"compiling {op} at {value} stopped ({out.returncode}): {out.stderr[-400:]}")
    fla = {} if args.dry else {k: f for k, f in gpu_run.load_fla().items() if k in args.fla_ops.split(",")}
    rows = []
    for shape in shapes:                      # the values one after the other per row: a budget cut
        for op in ops:                        # leaves whole rows
            for value in values:
                setattr(launch, knob, value)     # read per launch
                got = gpu_run.timing(device, dtype, fla if value == values[0] else {}, [shape], modes, args.budget,
                                     do_bench, lambda r: None, [op], [None])
                for row in got:
                    row[key] = value
                    if value != values[0]:       # the peer timed once, at the first value, on the same inputs
                        same = [r for r in rows if (r["op"], r["shape"], r["mode"], r[key])
                                == (row["op"], row["shape"], row["mode"], values[0])]
                        first = same[0] if same else {}
                        row.update({k: v for k, v in first.items() if k.startswith("fla_") or k == "note"})
                        if row.get("flexla_ms") and row.get("fla_ms"):
                            row["speedup"] = round(row["fla_ms"] / row["flexla_ms"], 3)
                rows += got
    for d in {Path(os.environ["OUT"])} if args.dry else {Path(os.environ.get("OUT", Path(__file__).parent)), Path(__file__).parent}:
        (d / f"results{args.tag}.json").write_text(json.dumps(rows, indent=1))
    print(f"{'op':24s} {'shape':22s} {'mode':6s} {'FLA':>7s} " + " ".join(f"{str(b):>8s}" for b in values)
          + f"   ({knob})")
    for row_key in dict.fromkeys((r["op"], tuple(r["shape"]), r["mode"]) for r in rows):
        at = {r[key]: r for r in rows if (r["op"], tuple(r["shape"]), r["mode"]) == row_key}
        fla_ms = next((r.get("fla_ms") for r in at.values() if r.get("fla_ms")), None)
        cells = " ".join(f"{at[b]['flexla_ms']:8.3f}" if b in at and at[b].get("flexla_ms") else f"{'-':>8s}"
                         for b in values)
        print(f"{row_key[0]:24s} {str(row_key[1]):22s} {row_key[2]:6s} {fla_ms or float('nan'):7.3f} {cells}", flush=True)


if __name__ == "__main__":
    main()
