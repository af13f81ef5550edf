"""Plots bench/results.json: flexla's and the peer's time per op and shape, forward and
forward+backward, with the roofline floor, to bench/results.png (shown in docs/performance.md)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot(results: dict, out: Path) -> None:
    rows = results
    modes = [m for m in ("fwd", "fwdbwd") if any(r["mode"] == m for r in rows)]
    fig, axes = plt.subplots(1, len(modes), figsize=(7 * len(modes), 5), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        sel = [r for r in rows if r["mode"] == mode and r.get("flexla_ms")]
        labels = [f"{r['op'].replace('chunk_', '')}\n{tuple(r['shape'][:4])}\n{r.get('schedule', 'auto')}" for r in sel]
        x = range(len(sel))
        w = 0.27
        ax.bar([i - w for i in x], [r["flexla_ms"] for r in sel], w, label="flexla")
        ax.bar(list(x), [r.get("fla_ms") or 0 for r in sel], w, label="FLA 0.6.0 / peer")
        ax.bar([i + w for i in x], [r["floor_ms"] for r in sel], w, label="roofline floor")
        ax.set_xticks(list(x), labels, fontsize=6, rotation=90)
        ax.set_ylabel("ms (median)")
        ax.set_yscale("log")
        ax.set_title(f"{mode} - {sel[0]['device'] if sel else ''}, torch {sel[0]['torch'] if sel else ''}, "
                     f"Triton {sel[0]['triton'] if sel else ''}", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    src = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results.json")
    plot(json.loads(src.read_text()), src.with_suffix(".png"))
    print(src.with_suffix(".png"))
