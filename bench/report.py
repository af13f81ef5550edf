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


def fastest_peer(results: list, history: list[list]) -> str:
    """The conservative reading: every row's ratio taken against the fastest peer time recorded for
    its op, shape and mode in any results file (the peer's times move by up to 2x between runs on
    unchanged code), per mode: geometric mean, rows at or above 1.0, rows below 0.8."""
    best = {}
    for r in [r for rows in history for r in rows] + results:
        if r.get("fla_ms"):
            key = (r["op"], tuple(r["shape"]), r["mode"])
            best[key] = min(best.get(key, math.inf), r["fla_ms"])
    out = []
    for mode in ("fwd", "fwdbwd"):
        s = [best[(r["op"], tuple(r["shape"]), mode)] / r["flexla_ms"] for r in results
             if r["mode"] == mode and r.get("fla_ms") and r.get("flexla_ms")]
        if s:
            out.append(f"{mode}: {math.exp(sum(map(math.log, s)) / len(s)):.2f} over {len(s)} rows, "
                       f"{sum(x >= 1 for x in s)} at or above 1.0, {sum(x < 0.8 for x in s)} below 0.8")
    return "\n".join(out)


if __name__ == "__main__":
    # report.py [results.json] renders the tables; report.py --fastest-peer [results.json] prints
    # the conservative reading against every bench/results*.json
    fastest = "--fastest-peer" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--fastest-peer"]
    path = Path(args[0] if args else Path(__file__).parent / "results.json")
    results = json.loads(path.read_text())
    if fastest:
        history = []
        for f in sorted(Path(__file__).parent.glob("results*.json")):
            rows = json.loads(f.read_text())
            history.append([r for r in rows if isinstance(r, dict) and "shape" in r] if isinstance(rows, list) else [])
        print(fastest_peer(results, history))
    else:
        print(render(results))
