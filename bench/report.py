"""Renders bench/results.json as the markdown tables of docs/performance.md."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path


def fmt(x, spec=".3f"):
    return "n/a" if x is None else format(x, spec)


def render(results: dict) -> str:
    rows = results
    meta = rows[0] if rows else {}
    out = [f"Device {meta.get('device')}, torch {meta.get('torch')}, Triton {meta.get('triton')}, "
           f"FLA 0.6.0, bf16, {meta.get('date')}. Times are `triton.testing.do_bench` medians in ms.", ""]
    for mode, title in (("fwd", "Forward"), ("fwdbwd", "Forward + backward")):
        sel = [r for r in rows if r["mode"] == mode]
        if not sel:
            continue
        out += [f"### {title}", "",
                "| run | op | B, T, H, D | flexla schedule | flexla ms | FLA ms | FLA / flexla | floor ms |"
                " flexla of floor | FLA of floor | flexla peak MB | FLA peak MB |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in sel:
            B, T, H, K, V = r["shape"]
            out.append(f"| {r.get('run', 1)} | {r['op']} | {B}, {T}, {H}, {K} | {r.get('schedule', 'auto')} | "
                       f"{fmt(r.get('flexla_ms'))} | {fmt(r.get('fla_ms'))} | "
                       f"{fmt(r.get('speedup'), '.2f')} | {fmt(r['floor_ms'])} | "
                       f"{fmt(r.get('flexla_floor_fraction'), '.2f')} | {fmt(r.get('fla_floor_fraction'), '.2f')} | "
                       f"{fmt(r.get('flexla_peak_mb'), '.0f')} | {fmt(r.get('fla_peak_mb'), '.0f')} |")
        s = [r["speedup"] for r in sel if r.get("speedup")]
        if s:
            out += ["", f"Geometric mean FLA / flexla: **{math.exp(sum(map(math.log, s)) / len(s)):.2f}** "
                        f"over {len(s)} rows (above 1 means flexla is faster; each ratio is from one run, "
                        f"both timed in the same process)."]
        notes = {r["note"] for r in sel if r.get("note")}
        out += [f"- {n}" for n in sorted(notes)] + [""]
    return "\n".join(out)


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results.json")
    print(render(json.loads(path.read_text())))
