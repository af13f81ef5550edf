"""Schedule choice between the fused sequential and the chunk-parallel forward.

The fused schedule walks all chunks of a (batch, head, V-slice) in one program and never writes
a state to memory; it is the fastest whenever those programs alone fill the GPU. With few
programs (small B*H, long T) most of the GPU would idle, so the chunk-parallel schedule runs the
state recurrence first (cheaper per chunk: only what the state needs) and then every chunk's
output in parallel, at the price of writing and reading one state per chunk.
"""
from __future__ import annotations

SCHEDULES = ("fused", "chunk")


def choose_schedule(B: int, H: int, NT: int, NV: int, sm_count: int, forced: str | None = None) -> str:
    if forced is not None:
        if forced not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {forced!r}")
        return forced
    programs = B * H * NV
    # fused is only worth it when its programs cover the GPU about twice, or the sequence is short
    return "fused" if programs >= 2 * sm_count or NT <= 2 else "chunk"
