"""Where the delta rules' and KDA's prep kernel spends its time: an experiment, not a check (the edited
kernels compute wrong results on purpose). The chunk-parallel forward runs with the generated
prep kernel and with edited copies of it, and the profiler reports the prep kernel's GPU time:

- as generated;
- `no_inverse`: the triangular inverse replaced by the identity (what the inverse costs);

(Run 119 also timed edits that took out the diagonal blocks' forward substitution and that
made the products by the inverse bf16; both are what the generated kernel does now.)

    python bench/prep_anatomy.py [--ops chunk_delta_rule,chunk_gated_delta_rule] [--shape 8,2048,16,128] [--chunks 64,32]
                                 [--edits generated,no_inverse] [--iters 10]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import flexla.ops as fx  # noqa: E402
from gpu_run import call, log, make_inputs  # noqa: E402
from profile_kernels import kernel_times  # noqa: E402

VARIANTS = {"chunk_delta_rule": fx.DeltaNet, "chunk_gated_delta_rule": fx.GatedDeltaNet, "chunk_kda": fx.KDA}
INVERSE = re.compile(r"= _tri_inverse\((\w+), (\w+), [^)]*\)")


def no_inverse(src: str) -> str:
    # the identity, still reading the matrix so that what builds it is not dropped
    return INVERSE.sub(r"= (tl.where(\2[:, None] == \2[None, :], 1.0, 0.0) + 0.0 * \1)", src)


EDITS = {"generated": lambda s: s, "no_inverse": no_inverse}


def edited_prep(source: str, name: str, edit):
    """The chunk_prep kernel of `source` after `edit`, from a module of its own."""
    path = Path(tempfile.mkdtemp()) / f"prep_{name}.py"
    path.write_text(edit(source))
    spec = importlib.util.spec_from_file_location(f"prep_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.chunk_prep


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ops", default="chunk_delta_rule,chunk_gated_delta_rule")
    p.add_argument("--shape", default="8,2048,16,128")
    p.add_argument("--chunks", default="64,32")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--edits", default=",".join(EDITS), help="which of the edits to time")
    args = p.parse_args()
    B, T, H, D = (int(n) for n in args.shape.split(","))
    os.environ.setdefault("FLEXLA_TUNE", "0")        # one config per kernel: only the edit differs
    rows = []
    for op in args.ops.split(","):
        variant = VARIANTS[op]
        variant.schedule = "chunk"
        x = make_inputs(op, B, T, H, D, D, torch.bfloat16, "cuda")
        for chunk in (int(c) for c in args.chunks.split(",")):
            variant.chunk_size = chunk
            call(getattr(fx, op), op, x)                  # compiles the module
            compiled = next(reversed(variant._compiled.values()))
            original = compiled.module.chunk_prep
            for name in args.edits.split(","):
                edit = EDITS[name]
                compiled.module.chunk_prep = edited_prep(compiled.source, f"{op}_{chunk}_{name}", edit)
                try:
                    times = dict(kernel_times(lambda: call(getattr(fx, op), op, x), args.iters))
                finally:
                    compiled.module.chunk_prep = original
                prep = sum(t for k, t in times.items() if k.startswith("chunk_prep"))
                total = sum(times.values())
                log(f"{op} chunk {chunk} {name:22s} prep {prep:7.1f} us   forward {total:7.1f} us")
                rows.append(dict(op=op, shape=[B, T, H, D], chunk=chunk, edit=name, prep_us=round(prep, 1),
                                 forward_us=round(total, 1)))
    out = Path(os.environ.get("OUT", "/tmp"))
    (out / "prep_anatomy.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
