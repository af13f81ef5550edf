"""Launch configs per kernel (num_warps x num_stages), and the backward's chunk size: searched once
on the device, kept on disk.

The space is small, pruned to what can pay off (measured per kernel on an H200, see
docs/performance.md):
- kernels that walk the chunks in a loop (the state scans, the fused schedule) can overlap the next
  chunk's loads with this chunk's work: 1 or 3 pipeline stages, 4 warps; and 8 warps at 1, 2 or 3
  stages where the state slice a program carries is 256 x 64 or more (sm_90 compiles of the delta
  rule's scan at D = 256: 380 B of spills a thread at 4 warps, none at 8; 8 warps and 2 stages fit
  at chunk 64 (192 KB of shared memory), 3 stages only at chunk 32 (144 KB; 272 at 64));
- per-chunk kernels have no loop over memory; 8 warps give each thread half the registers' worth
  of the same tiles (the gradient kernels spill at 4): 4 or 8 warps, one stage, 8 only where the
  K and V tiles are 64 wide or more (on small tiles nothing spills, and HGRN's 16-wide tiles
  crashed with an illegal address at 8 warps on the H200), and 8 alone for the whole (unsplit)
  gradient kernel at 128 x 128 tiles or more, where 4 warps lost 5x.
The backward's chunk may differ from the forward's (it recomputes its states): C or C/2 is timed
over the whole backward pass. Smaller chunks shrink the per-chunk gradient kernel's tiles, which
spill at C = 64 for the gated and delta ops (measured: GLA 6.0 -> 4.3 ms, KDA 15.6 -> 11.8 ms) and
cost more state traffic for the simple ones (retention 1.4 -> 2.1 ms).
- a scan in V slices of 32 (runtime/launch.scan_launch: the delta rules' and KDA's at few heads)
  pipelines at 2 or 3 stages, never 1: at 4 warps and 1 stage the delta rule's scan gave wrong
  states and illegal addresses on the H200 at 4096 tokens or more (run 144; Triton 3.6; right at
  300), while 4x2, 4x3, 2x1 and 2x3 matched 64-wide slices bit for bit (run 145). Not explained:
  the TTGIR of 4x1 looks sound. Likely the fault that crashed KDA's scans when slices of 32 were
  an extra candidate (runs 12-14).
Each candidate runs on the call's own buffers (a kernel only writes its outputs, so running it
again is harmless) and is timed with CUDA events. The fastest is kept per device, Triton version,
module, kernel and shape bucket (head dims, dtype, tile sizes, powers of two of the program and
chunk counts) in <cache dir>/tuning.json, so a new sequence length in the same bucket does not
tune again.

FLEXLA_TUNE=0 turns the search off (first candidate), FLEXLA_TUNE=last takes the last candidate
that fits (the checks run both ends of each search: a config the search may pick is a config that is
checked), FLEXLA_TUNE=compile compiles every candidate without timing (for processes that share
the GPU, e.g. the benchmark's compile children);
FLEXLA_KERNEL_CONFIG="bwd_grads=8x1,chunk_output=8x1x1,..." forces configs (experiments; the
output kernel's third number is EARLY_LOADS).
"""
from __future__ import annotations

import json
import os
import sys

import torch
import triton
from triton.runtime.errors import OutOfResources, PTXASError

from ..codegen import cache
from ..frontend.errors import DoesNotFit

# what a candidate that the device cannot run raises: too much shared memory, or ptxas giving up
# (register pressure: GLA's one-kernel gradient at K = V = 256 and chunk 64 on sm_90)
CANNOT_RUN = (OutOfResources, PTXASError, DoesNotFit)
LOOPING = {"chunk_states", "bwd_states", "fused_fwd", "bwd"}
LOOP_CANDIDATES = [(4, 1), (4, 3)]
NARROW_V_LOOP_CANDIDATES = [(4, 2), (4, 3)]     # V slices under 64 on the tensor cores: no 4x1
BIG_STATE = 256 * 64          # state slice elements from which a loop also tries 8 warps
BIG_STATE_CANDIDATES = [(8, 1), (8, 2), (8, 3)]
# the scans also try two warpgroups: a step's operand scaled in registers (simple GLA's and
# retention's v * decay) is then split over twice the threads. H200 (run 183, flexla alone), forward
# at (1, 32768, 16, 128): simple GLA 0.643 -> 0.504 ms, retention 0.636 -> 0.495 (8x2: no gain)
SCANS = {"chunk_states", "bwd_states"}
SCAN_TWO_WARPGROUPS = (8, 3)
PER_CHUNK_CANDIDATES = [(4, 1), (8, 1)]
# the output kernel also tunes where its loads go (EARLY_LOADS, a third config entry): each just
# before its first reader (codegen/kernels._at_first_use: less shared memory held, so more
# programs fit) or all at the top (their latencies overlap the first products). Measured on an
# H200 (run 113, (2, 4096, 8, 256), forward): retention's output kernel 0.121 ms at the top against
# 0.154 at first use, linear attention's 0.102 against 0.118; at K = V = 128 first use won (run 105)
OUTPUT_CANDIDATES = [(4, 1, 0), (8, 1, 0), (4, 1, 1), (8, 1, 1)]
BIG_GRADS = 128 * 128         # tile elements from which the whole gradient kernel tries 8 warps only
_TABLE: dict | None = None


def forced_configs(spec: str) -> dict:
    """"chunk_states=4x3,bwd_grads=8x1" -> {kernel: (num_warps, num_stages)}."""
    out = {}
    for item in filter(None, spec.split(",")):
        name, cfg = item.split("=")
        out[name.strip()] = tuple(int(x) for x in cfg.split("x"))
    return out


def candidates(kernel_name: str, consts: dict) -> list[tuple]:
    if kernel_name in LOOPING:
        # a [BK, BV] state slice of 16K fp32 values is 128 registers a thread at 4 warps, half of
        # what a thread has: such scans (the delta rules' at D = 256, which cannot split K) spill
        big_state = consts["BK"] * consts["BV"] >= BIG_STATE
        narrow_v = consts["BV"] < 64 <= consts["BK"]
        cands = (NARROW_V_LOOP_CANDIDATES if narrow_v else LOOP_CANDIDATES) + BIG_STATE_CANDIDATES * big_state
        return cands + [SCAN_TWO_WARPGROUPS] * (kernel_name in SCANS and SCAN_TWO_WARPGROUPS not in cands)
    if kernel_name == "bwd_grads" and consts["BK"] * consts["BV"] >= BIG_GRADS:
        # the whole gradient kernel at K, V tiles of 128: 4 warps were 4.6-5.4x slower than 8 at
        # chunk 32 (GLA 15.0 vs 2.8 ms, RWKV-6 19.7 vs 3.7, mLSTM 12.8 vs 2.7; run 72, H200), and
        # KDA's at chunk 64 is the longest compile of a cold backward (23 s): 8 warps only
        return PER_CHUNK_CANDIDATES[-1:]
    wide = min(consts["BK"], consts["BV"]) >= 64
    if kernel_name == "chunk_output":
        return OUTPUT_CANDIDATES if wide else OUTPUT_CANDIDATES[:1]
    return PER_CHUNK_CANDIDATES if wide else PER_CHUNK_CANDIDATES[:1]


def knobs(cfg: tuple) -> dict:
    """A config's constexprs past (num_warps, num_stages): the output kernel's EARLY_LOADS."""
    return {"EARLY_LOADS": cfg[2]} if len(cfg) > 2 else {}


def config_name(cfg: tuple) -> str:
    return f"{cfg[0]}x{cfg[1]}" + (" early loads" if len(cfg) > 2 and cfg[2] else "")


def fix_up_config(kernel_name: str, consts: dict) -> tuple:
    """The one config of a gated per-chunk kernel's fix-up pass (GATES == 2, on the chunks the fast
    pass flagged: rare, and most programs return at once, so its speed hardly counts): the
    candidate with the most warps, whose blocked gate products spill least. Not tuned, so a cold
    start compiles it once rather than per candidate: at 4 warps GLA's dq/dk/dg fix-up took 12 s
    to compile, the longest of the backward's compiles (sm_90, Triton 3.6). Loads at first use,
    which hold the least shared memory (GLA's output fix-up at K = V = 256 fits only so)."""
    return max(c for c in candidates(kernel_name, consts) if not knobs(c).get("EARLY_LOADS"))


def pow2(n) -> int:
    """The smallest power of two >= n (n >= 1). Plain Python: triton.next_power_of_2 goes through
    Triton's jit dispatch, microseconds on every launch."""
    return 1 << (max(int(n), 1) - 1).bit_length()


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def bucket(kernel_name: str, consts: dict, grid) -> str:
    """What a kernel's best config depends on; sequence lengths within a power of two share one."""
    programs = 1
    for g in grid:
        programs *= g
    parts = [consts[k] for k in ("K", "V", "BC", "BK", "BV", "DOT_DTYPE")] + [pow2(programs)]
    if kernel_name in LOOPING:
        parts.append(pow2(consts["NT"]))
    return "/".join(map(str, parts))


def _table_path():
    return cache.cache_dir() / "tuning.json"


def _table() -> dict:
    global _TABLE
    if _TABLE is None:
        try:
            _TABLE = json.loads(_table_path().read_text())
        except (OSError, ValueError):
            _TABLE = {}
    return _TABLE


def _remember(key: str, cfg) -> None:
    table = _table()
    try:     # merge with what other processes wrote meanwhile
        table.update({k: v for k, v in json.loads(_table_path().read_text()).items() if k not in table})
    except (OSError, ValueError):
        pass
    table[key] = list(cfg) if isinstance(cfg, tuple) else cfg
    cache.write_atomically(_table_path(), json.dumps(table, indent=0, sort_keys=True))


def cuda_time(run, reps: int = 3) -> float:
    """Milliseconds per run, after one untimed run (which compiles)."""
    run()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        run()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / reps


def choose(name: str, key: str | None, launch, consts: dict, timer=cuda_time, label: str = "") -> tuple:
    """The config to launch kernel `name` with: forced, remembered, or searched now (key None: no
    device to time on, the first candidate). launch(cfg) runs the kernel once with cfg; timer(fn)
    times fn on the device."""
    forced = _forced(name)
    if forced is not None:
        return forced
    return search(key, candidates(name, consts), launch, timer, f"{label}{name}", "warps x stages",
                  name_of=config_name)


def to_compile(name: str, key: str | None, consts: dict) -> list:
    """The configs choose() will launch kernel `name` with (runtime/precompile.py compiles them
    ahead): every candidate where it searches now, else the one it takes; none off the GPU."""
    if key is None:
        return []
    forced = _forced(name)
    return [forced] if forced is not None else to_search(key, candidates(name, consts))


def _forced(name: str) -> tuple | None:
    """FLEXLA_KERNEL_CONFIG's config for kernel `name`, if it forces one."""
    return forced_configs(os.environ.get("FLEXLA_KERNEL_CONFIG", "")).get(name)


def to_search(key: str | None, cands: list) -> list:
    """The candidates search(key, cands, ...) will run: all where it times them now, else the one
    it takes."""
    decided = _decided(key, cands)
    return cands if decided is None else [decided]


def tune_mode() -> str:
    """FLEXLA_TUNE: 1 (search, the default), 0 (first candidates), last, compile. Read per call:
    tests and experiments change it in-process."""
    return os.environ.get("FLEXLA_TUNE", "1")


def _decided(key: str | None, cands: list):
    """The candidate search() takes without running any: the first (key None, or FLEXLA_TUNE=0) or
    the remembered one; None where it runs them all (or, for FLEXLA_TUNE=last, some)."""
    mode = tune_mode()
    if key is None or mode == "0":
        return cands[0]
    if mode not in ("compile", "last") and key in _table():
        found = _table()[key]
        return tuple(found) if isinstance(found, list) else found
    return None


def search(key: str | None, cands: list, run, timer=cuda_time, what: str = "", unit: str = "", name_of=None):
    """The candidate for which run(candidate) is fastest: remembered under key, or timed now
    (key None, or FLEXLA_TUNE=0: the first)."""
    decided = _decided(key, cands)
    if decided is not None:
        return decided
    mode = tune_mode()
    if mode == "compile":         # compile every candidate, choose none (a later quiet process times them)
        fitting = [c for c in cands if _fits(run, c)]
        return fitting[0] if fitting else cands[0]
    if mode == "last":            # the other end of the search, as far as it fits (one that does not
        return next((c for c in reversed(cands[1:]) if _fits(run, c)), cands[0])   # is never picked)
    times, last_error = {}, None
    for c in cands:
        try:
            times[c] = timer(lambda: run(c))
        except CANNOT_RUN as e:          # this candidate does not fit or build; another may
            last_error = e
    if not times:
        raise last_error
    best = min(times, key=times.get)
    name_of = name_of or (lambda c: "x".join(map(str, c)) if isinstance(c, tuple) else str(c))
    print(f"flexla: tuned {what}: " + ", ".join(f"{name_of(c)} {t:.3f} ms" for c, t in times.items())
          + f" -> {name_of(best)} ({unit})", file=sys.stderr)
    _remember(key, best)
    return best


def pass_bucket(K: int, V: int, dtype, BH: int, NT: int) -> str:
    """A whole pass's bucket (its chunk size): head dims, dtype, powers of two of B*H and chunks."""
    return f"{K}/{V}/{dtype}/{pow2(BH)}/{pow2(NT)}"


def _fits(launch, cfg) -> bool:
    try:
        launch(cfg)
        return True
    except CANNOT_RUN:
        return False


def reset() -> None:
    """Forget the table read from disk (tests)."""
    global _TABLE
    _TABLE = None
