"""One run on the GPU: bf16 correctness of every op against float64, then forward and
forward+backward times of flexla next to FLA 0.6.0 (same inputs, same process), peak memory,
and a short table. Timings go to bench/results.json, checks to bench/correctness.json (both named with --tag; and $OUT when set).

    python bench/gpu_run.py            # on the GPU machine, FLA unpacked on PYTHONPATH
    TRITON_INTERPRET=1 python bench/gpu_run.py --dry   # tiny shapes on the CPU, to test the script
"""
from __future__ import annotations

import argparse
import functools
import concurrent.futures
import datetime
import json
import math
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import flexla.ops as fx  # noqa: E402
from flexla.variants import get  # noqa: E402
from recurrences import (delta_rule_ref, gated_delta_rule_ref, gla_ref, hgrn_ref, kda_ref, linear_attn_ref,  # noqa: E402
                         mamba2_ref, mlstm_ref, retention_ref, rwkv6_ref, simple_gla_ref)

OPS = ["chunk_linear_attn", "chunk_retention", "chunk_simple_gla", "chunk_gla", "chunk_delta_rule",
       "chunk_gated_delta_rule", "chunk_kda", "chunk_rwkv6", "chunk_mlstm", "chunk_hgrn"]
# checked in bf16, not timed by default: FLA 0.6.0 has no Mamba2 op; linear attention with FLA's
# default normalize=True (the rows time normalize=False, on both sides)
CHECK_ONLY = ["chunk_mamba2", "chunk_linear_attn_normalized"]
FLEXLA_OPS = {"chunk_linear_attn_normalized": functools.partial(fx.chunk_linear_attn, normalize=True)}
OWN_ARGS = {"chunk_hgrn", "chunk_mamba2"}   # inputs passed in make_inputs' order, not as q, k, v, ...
VARIANTS = ["linear_attn", "linear_attn_normalized", "retention", "simple_gla", "gla", "delta_rule",
            "gated_delta_rule", "kda", "rwkv6", "mlstm", "hgrn", "mamba2"]
SHAPES = {  # B, T, H, K, V
    "issue5": [(8, 2048, 16, 128, 128), (2, 8192, 16, 128, 128), (1, 32768, 16, 128, 128),
               (4, 4096, 32, 64, 64), (2, 4096, 8, 256, 256)],
    "quick": [(8, 2048, 16, 128, 128), (1, 32768, 16, 128, 128), (4, 4096, 32, 64, 64)],
    "one": [(8, 2048, 16, 128, 128)],
    "rest": [(2, 8192, 16, 128, 128), (1, 32768, 16, 128, 128), (4, 4096, 32, 64, 64), (2, 4096, 8, 256, 256)],
    "long": [(1, 32768, 16, 128, 128)],
    "few_heads": [(2, 8192, 16, 128, 128), (1, 32768, 16, 128, 128)],
    "d128": [(8, 2048, 16, 128, 128), (2, 8192, 16, 128, 128), (1, 32768, 16, 128, 128)],
    "head_dims": [(4, 4096, 32, 64, 64), (2, 4096, 8, 256, 256)],
    "d64": [(4, 4096, 32, 64, 64)],
    "d256": [(2, 4096, 8, 256, 256)],
    "few_heads_d256": [(2, 8192, 16, 128, 128), (1, 32768, 16, 128, 128), (2, 4096, 8, 256, 256)],
    "one_d256": [(8, 2048, 16, 128, 128), (2, 4096, 8, 256, 256)],
}
FLA_BWD_REFUSED = {op: "FLA 0.6.0 refuses this backward on Hopper with Triton 3.6 (its issue 640)"
                   for op in ("chunk_simple_gla", "chunk_gated_delta_rule")}
START = time.time()


def log(*a):
    print(f"[{time.time() - START:6.0f}s]", *a, flush=True)


def load_fla():
    try:
        from fla.ops.gla import chunk_gla
        from fla.ops.linear_attn import chunk_linear_attn
        from fla.ops.retention import chunk_retention
        from fla.ops.simple_gla import chunk_simple_gla
        from fla.ops.delta_rule import chunk_delta_rule
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule
        from fla.ops.kda import chunk_kda
        from fla.ops.rwkv6 import chunk_rwkv6
        from fla.ops.hgrn import chunk_hgrn
        peers = dict(chunk_linear_attn=chunk_linear_attn, chunk_retention=chunk_retention,
                     chunk_simple_gla=chunk_simple_gla, chunk_gla=chunk_gla, chunk_delta_rule=chunk_delta_rule,
                     chunk_gated_delta_rule=chunk_gated_delta_rule, chunk_kda=chunk_kda, chunk_rwkv6=chunk_rwkv6,
                     chunk_hgrn=chunk_hgrn,
                     chunk_linear_attn_normalized=functools.partial(chunk_linear_attn, normalize=True))
    except Exception as e:  # noqa: BLE001
        log("FLA not importable:", e)
        peers = {}
    try:   # mlstm_kernels' sigmoid-input-gate mLSTM (TFLA), head-first layout [B, H, T, D]
        from mlstm_kernels.torch.chunkwise.triton_xl_chunk_siging import mlstm_siging_chunkwise__xl_chunk as mk

        def mlstm(q, k, v, i, f, initial_state=None, output_final_state=False):
            C0, n0 = initial_state if initial_state is not None else (None, None)
            out = mk(*(x.transpose(1, 2) for x in (q, k, v, i, f)), c_initial=C0, n_initial=n0,
                     return_last_states=output_final_state)
            h, states = out if output_final_state else (out, None)
            return h.transpose(1, 2), states
        mlstm.head_first = mk   # timed on head-first inputs, its own layout, so no transposes are timed
        peers["chunk_mlstm"] = mlstm
    except Exception as e:  # noqa: BLE001
        log("mlstm_kernels not importable:", e)
    return peers


def sdpa_ms(B, T, H, K, dtype, device, mode, do_bench):
    """Causal softmax attention (flash) on the same shape, as context."""
    if device != "cuda":
        return None
    q, k, v = (torch.randn(B, H, T, K, device=device, dtype=dtype, requires_grad=mode == "fwdbwd") for _ in range(3))
    f = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if mode == "fwd":
        return do_bench(f, warmup=25, rep=100, return_mode="median")
    do = torch.randn_like(q)
    return do_bench(lambda: f().backward(do), warmup=25, rep=100, grad_to_none=[q, k, v], return_mode="median")


def make_inputs(op, B, T, H, K, V, dtype, device, seed=0, grad=False):
    gen = torch.Generator(device="cpu").manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen).to(device)
    if op == "chunk_hgrn":      # channels D = H * V
        x = dict(x=r(B, T, H * V).to(dtype), g=(F.logsigmoid(r(B, T, H * V) + 3)).to(dtype))
        return {n: t.requires_grad_(grad) for n, t in x.items()}
    if op == "chunk_mamba2":    # one group: B and C shared by all heads
        x = dict(x=r(B, T, H, V).to(dtype), dt=F.softplus(r(B, T, H) - 1).to(dtype), A=-torch.rand(H, generator=gen).to(device) - 0.2,
                 B=r(B, T, 1, K).to(dtype), C=r(B, T, 1, K).to(dtype))
        return {n: t.requires_grad_(grad) for n, t in x.items()}
    x = dict(q=r(B, T, H, K).to(dtype), k=r(B, T, H, K).to(dtype), v=r(B, T, H, V).to(dtype))
    if op in ("chunk_simple_gla", "chunk_gated_delta_rule"):
        x["g"] = F.logsigmoid(r(B, T, H) + 3).float()
    if op in ("chunk_delta_rule", "chunk_gated_delta_rule"):
        x["k"] = F.normalize(x["k"].float(), dim=-1).to(dtype)
        x["beta"] = torch.rand(B, T, H, generator=gen).to(device).to(dtype)
    if op in ("chunk_gla", "chunk_kda", "chunk_rwkv6"):
        if os.environ.get("FLEXLA_BENCH_GATES") == "strong":    # about e^-6 a step: chunks need the fix-up pass
            x["g"] = (2 * F.logsigmoid(2 * r(B, T, H, K) - 3)).to(dtype)
        else:
            x["g"] = (F.logsigmoid(r(B, T, H, K) + 3) / 4).to(dtype)
    if op == "chunk_kda":
        x["k"] = F.normalize(x["k"].float(), dim=-1).to(dtype)
        x["beta"] = torch.rand(B, T, H, generator=gen).to(device).to(dtype)
    if op == "chunk_rwkv6":
        x["u"] = (0.5 * r(H, K)).to(dtype)
    if op == "chunk_linear_attn_normalized":    # a normaliser q . sum(k) away from 0, as with positive features
        x["q"], x["k"] = x["q"].abs(), x["k"].abs()
    if op == "chunk_mlstm":
        # Positive-mean q and k keep |q . n| well above the kink of max(|q . n|, 1): near it the exact
        # gradients move by 6% when the inputs move by 0.2%, so no bf16 kernel could match them there.
        x["q"], x["k"] = (x["q"].float() + 0.5).to(dtype), (x["k"].float() + 0.5).to(dtype)
        x["i"], x["f"] = r(B, T, H).to(dtype), (r(B, T, H) + 3).to(dtype)
    if grad:
        for t in x.values():
            t.requires_grad_()
    return x


def flexla_op(op):
    return FLEXLA_OPS.get(op) or getattr(fx, op)


def call(fn, op, x, **kw):
    if op in OWN_ARGS:
        return fn(*x.values(), **kw)
    extra = {"chunk_linear_attn": dict(normalize=False)}.get(op, {})
    args = [x["q"], x["k"], x["v"]] + [x[n] for n in ("g", "beta", "u", "i", "f") if n in x]
    return fn(*args, **extra, **kw)


def _mlstm_ref(q, k, v, i, f, initial_state=None, output_final_state=True):
    C0, n0 = initial_state
    return mlstm_ref(q, k, v, i, f, C0, n0, q.shape[-1] ** -0.5)


REFS = {"chunk_linear_attn": linear_attn_ref,
        "chunk_linear_attn_normalized": functools.partial(linear_attn_ref, normalize=True),
        "chunk_retention": retention_ref, "chunk_simple_gla": simple_gla_ref, "chunk_gla": gla_ref,
        "chunk_delta_rule": delta_rule_ref, "chunk_gated_delta_rule": gated_delta_rule_ref,
        "chunk_kda": kda_ref, "chunk_rwkv6": rwkv6_ref, "chunk_mlstm": _mlstm_ref, "chunk_hgrn": hgrn_ref,
        "chunk_mamba2": mamba2_ref}


def initial_state(op, B, H, K, V, device):
    if op == "chunk_hgrn":
        return torch.randn(B, H * V, device=device)
    if op == "chunk_mamba2":
        return torch.randn(B, H, V, K, device=device)
    h0 = torch.randn(B, H, K, V, device=device)
    if op == "chunk_linear_attn_normalized":
        return h0, torch.rand(B, 1, H, K, device=device)
    return (h0, torch.randn(B, H, K, device=device) + 2) if op == "chunk_mlstm" else h0


def flat(states):
    return list(states) if isinstance(states, (tuple, list)) else [states]


def rel(a, b):
    a, b = a.double(), b.double()
    if torch.isnan(a).any():
        return float("nan")
    return ((a - b).norm() / b.norm()).item()


def errors(fn, op, x, h0, ro, rht, rgrads, do, dht):
    """Relative errors of one implementation's output, final states and gradients against float64."""
    x = {n: t.detach().clone().requires_grad_() for n, t in x.items()}
    o, ht = call(fn, op, x, initial_state=h0, output_final_state=True)
    ((o.float() * do.float()).sum() + sum((h.float() * d).sum() for h, d in zip(flat(ht), dht))).backward()
    errs = {"o": rel(o, ro)}
    errs.update({f"ht{i}": rel(h, rh) for i, (h, rh) in enumerate(zip(flat(ht), flat(rht)))})
    errs.update({f"d{n}": rel(x[n].grad, rgrads[n]) for n in x})
    return errs


def correctness(device, dtype, shapes, tol, ops, peers, schedules=("fused", "chunk")):
    """flexla (both schedules, or those given) against float64 recurrences; the peer's errors on the
    same inputs are recorded beside them as context (they do not decide pass or fail)."""
    rows, ok = [], True
    for op in ops:
        peer_checks = []
        for (B, T, H, K, V) in shapes:
            x = make_inputs(op, B, T, H, K, V, dtype, device, seed=T)
            torch.manual_seed(T)        # the initial state and the output gradients too, run to run
            h0 = initial_state(op, B, H, K, V, device)
            xr = {n: t.double().requires_grad_() for n, t in x.items()}
            h0r = tuple(h.double() for h in flat(h0))
            ro, rht = call(REFS[op], op, xr, initial_state=h0r if len(h0r) > 1 else h0r[0], output_final_state=True)
            do, dht = torch.randn_like(ro).to(dtype), [torch.randn_like(h).float() for h in flat(rht)]
            ((ro * do.double()).sum() + sum((h * d.double()).sum() for h, d in zip(flat(rht), dht))).backward()
            rgrads = {n: t.grad for n, t in xr.items()}
            args = (op, x, h0, ro, rht, rgrads, do, dht)
            shape_rows = []
            for sched in schedules:
                for v in VARIANTS:
                    get(v).schedule = sched
                errs = errors(flexla_op(op), *args)
                worst = max(errs.values())
                good = worst < tol  # NaN compares False: a NaN fails
                ok &= good
                shape_rows.append(dict(op=op, shape=[B, T, H, K, V], schedule=sched, dtype=str(dtype), ok=good,
                                       peer_worst=None, **{k: float(f"{e:.3g}") for k, e in errs.items()}))
                log(f"{'PASS' if good else 'FAIL'} {op:18s} {(B, T, H, K, V)} {sched:5s} worst={worst:.2e} {errs}")
            rows += shape_rows
            peer_checks.append((args, shape_rows))
        # the peer after all of flexla's checks: a peer kernel that faults (FLA's linear attention
        # did at one of the small shapes, in run 161) leaves the CUDA context unusable
        for args, shape_rows in peer_checks if op in peers else []:
            try:
                peer = max(errors(peers[op], *args).values())
                log(f"peer {op:18s} {tuple(shape_rows[0]['shape'])} worst={peer:.2e}")
                for r in shape_rows:
                    r["peer_worst"] = float(f"{peer:.3g}")
            except Exception as e:  # noqa: BLE001
                log(f"peer check of {op} failed: {type(e).__name__}: {str(e)[:200]}; no more peer checks")
                peers = {}
                break
    for v in VARIANTS:
        get(v).schedule = None
    return ok, rows


def _die_with_parent():
    # a child left running after this process is killed (an outer `timeout`) would share the GPU
    # with the timing that follows: have Linux kill it with its parent
    import ctypes
    import signal
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)                # PR_SET_PDEATHSIG


def in_parallel(commands, jobs, timeout=None):
    """Run child processes `jobs` at a time (Triton compiles on the CPU, so side by side is faster)."""
    def run(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(cmd, 124, (e.stdout or b"").decode(), "timed out")
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(run, commands))


def correctness_in_parallel(ops, jobs, dry, no_peer):
    """One child process per op checks it and prints its rows."""
    rows = []
    flags = (["--dry"] if dry else []) + (["--no-peer-check"] if no_peer else [])
    outs = in_parallel([[sys.executable, __file__, "--check-one", op] + flags for op in ops], jobs)
    for op, out in zip(ops, outs):
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("ROWS ")]
        print("\n".join(ln for ln in out.stdout.splitlines() if "PASS" in ln or "FAIL" in ln or "peer" in ln),
              flush=True)
        if out.returncode or not lines:
            log(f"FAIL {op}: the check crashed\n{out.stderr[-3000:]}")
            rows.append(dict(op=op, ok=False, error=out.stderr[-1000:]))
        else:
            rows += json.loads(lines[-1][5:])
    return all(r["ok"] for r in rows), rows


def warm(op, device, dtype, shapes, modes, schedules, peer, done=frozenset()):
    """Call one op (flexla in each schedule, then the peer) once per timed shape and mode, so that the
    timing process finds every kernel compiled in Triton's disk cache. The peer's autotuning results
    are not kept from here (main), so it still tunes in the quiet timing process."""
    for shape in shapes:
        for mode in [m for m in modes if (op, tuple(shape), m) not in done]:
            for who, sched in [("flexla", s) for s in schedules] + ([("peer", None)] if peer else []):
                for v in VARIANTS:
                    get(v).schedule = sched
                x = make_inputs(op, *shape, dtype, device, grad=mode == "fwdbwd")
                try:
                    fn = flexla_op(op) if who == "flexla" else peer
                    o, _ = call(fn, op, x)
                    if mode == "fwdbwd":
                        o.float().sum().backward()
                    log(f"warm {who} {op} {shape} {mode} {sched or ''}")
                except Exception as e:  # noqa: BLE001
                    log(f"warm {who} {op} {shape} {mode}: {type(e).__name__}: {str(e)[:200]}")
                del x
                if device == "cuda":
                    torch.cuda.empty_cache()


def floor_ms(op, mode, B, T, H, K, V):
    """max(bytes / 4.2 TB/s, flops / 750 TFLOP/s): each input read once, each output written once."""
    if op == "chunk_hgrn":   # x, g in, o out; dx, dg out and do in for the backward
        return (3 if mode == "fwd" else 7) * B * T * H * V * 2 / 4.2e12 * 1e3
    C = 64
    per_key, per_head = B * T * H * K * 2, B * T * H * 2
    gate = {"chunk_simple_gla": 2 * per_head, "chunk_gla": per_key, "chunk_delta_rule": per_head,
            "chunk_gated_delta_rule": 2 * per_head + per_head, "chunk_kda": per_key + per_head,
            "chunk_rwkv6": per_key, "chunk_mlstm": 2 * per_head}.get(op, 0)
    io = 2 * (2 * B * T * H * K + 2 * B * T * H * V) + gate     # q, k, v in, o out (bf16)
    flops = B * H * T * (2 * C * (K + V) + 4 * K * V)           # intra qk^T, A v; inter q S, k^T v
    if mode == "fwdbwd":
        io, flops = 2 * io + gate, 3 * flops                     # + do in, dq dk dv dg out
    return max(io / 4.2e12, flops / 750e12) * 1e3


def in_graph_ms(run):
    """The forward replayed from a CUDA graph: its kernels' time without the host's, next to
    do_bench's (rows of a few hundred microseconds are host-bound and move between processes,
    docs/performance.md runs 156-160); None where the call cannot be captured."""
    from triton.testing import do_bench_cudagraph
    if GRAPHS_FAILED:
        return None
    try:
        return do_bench_cudagraph(run, rep=100, return_mode="median")
    except Exception as e:  # noqa: BLE001      # a failed capture may leave the stream unusable:
        GRAPHS_FAILED.append(e)                  # no more graphs in this process
        log(f"no CUDA graphs from here on: {type(e).__name__}: {str(e)[:160]}")
        return None


GRAPHS_FAILED = []


def timed_rows(path: Path) -> list:
    """The rows an earlier command wrote to a results file (--resume), none where there is none."""
    return [r for r in json.loads(path.read_text()) if isinstance(r, dict) and "shape" in r] if path.exists() else []


def timing(device, dtype, fla, shapes, modes, budget_s, do_bench, save, ops, schedules, done=frozenset()):
    rows, sdpa = [], {}
    meta = dict(device=torch.cuda.get_device_name() if device == "cuda" else "cpu", torch=torch.__version__,
                triton=__import__("triton").__version__, date=datetime.date.today().isoformat())
    for mode in modes:
        for shape in shapes:
            for op, sched in [(op, s) for op in ops for s in schedules]:
                for v in VARIANTS:
                    get(v).schedule = sched
                if (op, tuple(shape), mode) in done:
                    continue
                if time.time() - START > budget_s:
                    log("time budget reached, skipping", op, shape, mode)
                    continue
                B, T, H, K, V = shape
                x = make_inputs(op, B, T, H, K, V, dtype, device, grad=mode == "fwdbwd")
                do = torch.randn(B, T, H * V if op == "chunk_hgrn" else H, *([] if op == "chunk_hgrn" else [V]),
                                 device=device, dtype=dtype)
                row = dict(op=op, shape=list(shape), mode=mode, schedule=sched or "auto",
                           peer="mlstm_kernels 2.0.6" if op == "chunk_mlstm" else "fla 0.6.0",
                           floor_ms=floor_ms(op, mode, *shape), **meta)
                if (shape, mode) not in sdpa:
                    try:
                        sdpa[(shape, mode)] = sdpa_ms(B, T, H, K, dtype, device, mode, do_bench)
                    except Exception as e:  # noqa: BLE001
                        sdpa[(shape, mode)] = None
                        log("sdpa failed:", e)
                row["sdpa_ms"] = sdpa[(shape, mode)]
                peers = (("flexla", flexla_op(op)),) + ((("fla", fla.get(op)),) if sched is schedules[0] else ())
                for who, fn in peers:
                    key = f"{who}_ms"
                    if fn is None or (who == "fla" and mode == "fwdbwd" and op in FLA_BWD_REFUSED):
                        row[key] = None
                        row["note"] = FLA_BWD_REFUSED.get(op, "peer not available") if who == "fla" else None
                        continue
                    try:
                        xs, dos = x, do
                        if hasattr(fn, "head_first"):   # the peer's own layout, so no transposes are timed
                            xs = {n: t.detach().transpose(1, 2).contiguous().requires_grad_(mode == "fwdbwd")
                                  for n, t in x.items()}
                            dos = do.transpose(1, 2).contiguous()
                            fn = (lambda f: lambda *a, **kw: (f(*a), None))(fn.head_first)
                        if mode == "fwd":
                            run = lambda: call(fn, op, xs)
                        else:
                            def run():
                                o, _ = call(fn, op, xs)
                                o.backward(dos)
                        t0 = time.time()
                        run()
                        if device == "cuda":
                            torch.cuda.synchronize()
                        row[f"{who}_first_call_s"] = round(time.time() - t0, 2)
                        if device == "cuda":
                            torch.cuda.reset_peak_memory_stats()
                            base = torch.cuda.memory_allocated()
                            run()
                            torch.cuda.synchronize()
                            row[f"{who}_peak_mb"] = round((torch.cuda.max_memory_allocated() - base) / 2**20, 1)
                        grads = list(xs.values()) if mode == "fwdbwd" else None
                        row[key] = do_bench(run, warmup=25, rep=100, grad_to_none=grads, return_mode="median")
                        if mode == "fwd" and device == "cuda":
                            row[f"{who}_graph_ms"] = in_graph_ms(run)
                    except Exception as e:  # noqa: BLE001
                        row[key] = None
                        row[f"{who}_error"] = f"{type(e).__name__}: {str(e)[:300]}"
                        log(f"ERROR {who} {op} {shape} {mode}: {row[f'{who}_error']}")
                if row.get("flexla_ms") and row.get("fla_ms"):
                    row["speedup"] = round(row["fla_ms"] / row["flexla_ms"], 3)
                if row.get("flexla_ms"):
                    row["flexla_floor_fraction"] = round(row["floor_ms"] / row["flexla_ms"], 3)
                if row.get("fla_ms"):
                    row["fla_floor_fraction"] = round(row["floor_ms"] / row["fla_ms"], 3)
                rows.append(row)
                save(rows)
                log(json.dumps(row))
    return rows


def table(rows):
    lines = [f"{'op':22s} {'shape':22s} {'mode':6s} {'sched':5s} {'flexla':>8s} {'fla':>8s} {'x':>6s} {'floor':>7s}"
             f" {'graphs: flexla':>14s} {'fla':>8s}"]
    for r in rows:
        f = lambda v: f"{v:8.3f}" if v else "     n/a"
        lines.append(f"{r['op']:22s} {str(tuple(r['shape'])):22s} {r['mode']:6s} {r['schedule']:5s} {f(r.get('flexla_ms'))} "
                     f"{f(r.get('fla_ms'))} {r.get('speedup', float('nan')):6.2f} {r['floor_ms']:7.3f}"
                     f"       {f(r.get('flexla_graph_ms'))} {f(r.get('fla_graph_ms'))}")
    geo = [r["speedup"] for r in rows if r.get("speedup")]
    for mode in ("fwd", "fwdbwd"):
        s = [r["speedup"] for r in rows if r.get("speedup") and r["mode"] == mode]
        if s:
            lines.append(f"geomean speedup {mode}: {math.exp(sum(map(math.log, s)) / len(s)):.3f} over {len(s)} rows")
    return "\n".join(lines) if geo or rows else "no timings"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dry", action="store_true", help="tiny shapes on the CPU interpreter")
    p.add_argument("--budget", type=float, default=500,
                   help="seconds from the process's start (compiles and warm-up included) after which timing stops")
    p.add_argument("--modes", default="fwd,fwdbwd", help="comma-separated: fwd, fwdbwd")
    p.add_argument("--skip-check", action="store_true", help="time without the correctness pass (after a run that did it)")
    p.add_argument("--check-only", action="store_true", help="the correctness pass alone")
    p.add_argument("--ops", default=",".join(OPS), help="comma-separated ops to time")
    p.add_argument("--jobs", type=int, default=1, help="check this many ops at once, one process each "
                   "(Triton compiles on the CPU; the checks themselves are tiny)")
    p.add_argument("--warm-s", type=float, default=240, help="cap on the parallel compile before timing")
    p.add_argument("--no-peer-check", action="store_true", help="check flexla only, not the peer's errors")
    p.add_argument("--strong-gates", action="store_true", help="per-key gates of about e^-6 a step (GLA, KDA, "
                   "RWKV-6), which the gated products' fix-up pass computes")
    p.add_argument("--check-shapes", help="B,T,H,K,V;... shapes to check at instead of the five default ones")
    p.add_argument("--check-schedules", help="schedules to check, default fused,chunk (KDA's "
                   "fused backward at D = 256 keeps ptxas busy for minutes: check it with chunk alone)")
    p.add_argument("--tag", default="", help="suffix of the results file, for experiments: results<tag>.json")
    p.add_argument("--resume", action="store_true", help="keep the rows already in bench/results<tag>.json "
                   "and time only the missing ones: a command that --budget cut goes on where it stopped "
                   "(copy the file back into bench/ between machines)")
    p.add_argument("--check-one", help=argparse.SUPPRESS)   # child of --jobs: check one op, print its rows
    p.add_argument("--warm-one", help=argparse.SUPPRESS)    # child of --jobs: compile one op's timed kernels
    p.add_argument("--check-ops", default=",".join(OPS + CHECK_ONLY), help="comma-separated ops to check in bf16")
    p.add_argument("--fla-ops", default=",".join(OPS), help="ops to time FLA on too (its first call autotunes for minutes)")
    p.add_argument("--schedules", default="auto", help="flexla schedules to time: auto, fused, chunk (comma-separated)")
    p.add_argument("--shapes", default="quick", choices=sorted(SHAPES), help="which shape set to time")
    args = p.parse_args()
    if args.warm_one or args.check_one:
        # FLA's autotuner keeps its choices on disk (FLA_CACHE_RESULTS, on by default): chosen here,
        # in children that share the GPU, they would be timed amid the others' work, and the timing
        # process would reuse them. Children only compile; FLA tunes in the quiet timing process.
        os.environ["FLA_CACHE_RESULTS"] = "0"
    if args.strong_gates:
        os.environ["FLEXLA_BENCH_GATES"] = "strong"     # the children inherit it
    if args.check_shapes:
        os.environ["FLEXLA_BENCH_CHECK_SHAPES"] = args.check_shapes     # the children read it too
    if args.check_schedules:
        os.environ["FLEXLA_BENCH_CHECK_SCHEDULES"] = args.check_schedules
    check_schedules = os.environ.get("FLEXLA_BENCH_CHECK_SCHEDULES", "fused,chunk").split(",")
    out = Path(os.environ.get("OUT", "/tmp" if args.dry else Path(__file__).parent))
    out.mkdir(parents=True, exist_ok=True)
    if args.dry:
        device, dtype, tol = "cpu", torch.float16, 2e-2
        check_shapes = [(1, 37, 2, 16, 16)]
        bench_shapes = [(1, 64, 2, 16, 16)]
        fla = {}
        do_bench = lambda fn, **kw: (lambda t0: (fn(), time.time() - t0)[1] * 1e3)(time.time())
    else:
        from triton.testing import do_bench
        device, dtype, tol = "cuda", torch.bfloat16, 2e-2
        # the last shape is long: the scans in V slices of 32 were right at 300 tokens and wrong
        # from 4096 at one tuning candidate (runs 144-145, docs/performance.md)
        check_shapes = [tuple(int(n) for n in shape.split(",")) for shape in
                        os.environ.get("FLEXLA_BENCH_CHECK_SHAPES",
                                       "2,300,4,64,64;1,130,2,40,72;1,100,2,32,64;1,70,2,8,4;1,4096,4,64,64").split(";")]
        bench_shapes = SHAPES[args.shapes]
        fla = {k: f for k, f in load_fla().items() if k in args.fla_ops.split(",")}
    schedules = [None if s == "auto" else s for s in args.schedules.split(",")]
    modes = args.modes.split(",")
    if set(modes) - {"fwd", "fwdbwd"}:
        p.error(f"--modes takes fwd, fwdbwd or both comma-separated, not {args.modes!r}")
    kept = timed_rows((out if args.dry else Path(__file__).parent) / f"results{args.tag}.json") if args.resume else []
    done = {(r["op"], tuple(r["shape"]), r["mode"]) for r in kept}
    if args.warm_one:     # compile every tuning candidate; the quiet timing process times them
        os.environ["FLEXLA_TUNE"] = "compile"
        warm(args.warm_one, device, dtype, bench_shapes, modes, schedules, fla.get(args.warm_one), done)
        return
    peers = {} if args.no_peer_check else fla     # the peer's cold autotuning costs minutes per op
    if args.check_one:
        ok, checks = correctness(device, dtype, check_shapes, tol, [args.check_one], peers, check_schedules)
        print("ROWS " + json.dumps(checks))
        return
    log(f"== correctness ({dtype}, tolerance {tol}) ==")
    try:
        check_ops = args.check_ops.split(",")
        ok, checks = ((True, []) if args.skip_check else
                      correctness(device, dtype, check_shapes, tol, check_ops, peers, check_schedules) if args.jobs == 1 else
                      correctness_in_parallel(check_ops, args.jobs, args.dry, args.no_peer_check))
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        ok, checks = False, []
    log(f"correctness: {'ALL PASS' if ok else 'FAILURES'}")
    log("== timing ==")

    for d in ({out} if args.dry else {out, Path(__file__).parent}):
        if not args.skip_check:
            (d / f"correctness{args.tag}.json").write_text(json.dumps(dict(correct=ok, rows=checks), indent=1))

    def save(rows):
        for d in ({out} if args.dry else {out, Path(__file__).parent}):
            (d / f"results{args.tag}.json").write_text(json.dumps(kept + rows, indent=1))
    if args.check_only:
        return
    if ok and args.jobs > 1:
        log(f"== compiling the timed kernels, one process per op, for at most {args.warm_s:.0f}s ==")
        ops = args.ops.split(",")
        outs = in_parallel([[sys.executable, __file__, "--warm-one", op, "--shapes", args.shapes, "--modes",
                             args.modes, "--schedules", args.schedules, "--fla-ops", args.fla_ops, "--tag", args.tag]
                            + (["--dry"] if args.dry else []) + (["--resume"] if args.resume else []) for op in ops],
                           args.jobs, args.warm_s)
        for op, child in zip(ops, outs):
            print(child.stdout, flush=True)
            if child.returncode:
                log(f"compiling {op} stopped ({child.returncode}); timing compiles the rest:\n{child.stderr[-800:]}")
    if kept:
        log(f"resuming: {len(kept)} rows kept from results{args.tag}.json")
    rows = timing(device, dtype, fla, bench_shapes, modes, args.budget, do_bench, save,
                  args.ops.split(","), schedules, done) if ok else []
    log(table(kept + rows))


if __name__ == "__main__":
    main()
