"""Per-kernel launch configs (runtime/tuning.py): the fastest candidate wins, a config that does not
fit is skipped, the choice is kept on disk per shape bucket, and the knobs override it. The timer is
a stand-in here (the search only runs on a GPU)."""
import json

import pytest
from triton.runtime.errors import OutOfResources, PTXASError

from flexla.runtime import tuning

CONSTS = dict(K=128, V=128, BC=64, BK=128, BV=64, DOT_DTYPE="bf16", NT=32)


@pytest.fixture(autouse=True)
def fresh_table(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEXLA_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("FLEXLA_KERNEL_CONFIG", raising=False)
    monkeypatch.delenv("FLEXLA_TUNE", raising=False)
    tuning.reset()
    yield
    tuning.reset()


def fake_timer(ms_by_config, runs):
    """A timer that runs the launch once and reports the time given for its config."""
    def timer(fn):
        fn()
        return ms_by_config[runs[-1]]
    return timer


def test_fastest_candidate_is_chosen_and_kept_on_disk(tmp_path, capsys):
    runs = []
    timer = fake_timer({(4, 1): 2.0, (8, 1): 1.0}, runs)
    assert tuning.choose("bwd_grads", "key", runs.append, CONSTS, timer) == (8, 1)
    assert runs == [(4, 1), (8, 1)]
    assert "tuned bwd_grads" in capsys.readouterr().err
    assert json.loads((tmp_path / "tuning.json").read_text()) == {"key": [8, 1]}
    tuning.reset()                                   # a new process: read back, not timed again
    assert tuning.choose("bwd_grads", "key", runs.append, CONSTS, timer) == (8, 1)
    assert len(runs) == 2


def test_scans_search_pipeline_stages():
    runs = []
    assert tuning.choose("chunk_states", "k2", runs.append, CONSTS,
                         fake_timer({(4, 1): 1.0, (4, 3): 0.5, (8, 3): 0.6}, runs)) == (4, 3)
    assert runs == [(4, 1), (4, 3), (8, 3)]


def test_a_config_that_does_not_fit_is_skipped():
    def launch(cfg):
        if cfg == (8, 1):
            raise OutOfResources(300_000, 232_448, "shared memory")
    assert tuning.choose("bwd_grads", "k3", launch, CONSTS, lambda fn: fn() or 1.0) == (4, 1)


def test_a_config_ptxas_cannot_build_is_skipped():
    def launch(cfg):
        if cfg == (4, 1):
            raise PTXASError("Internal Triton PTX codegen error")
    assert tuning.choose("bwd_grads", "k3b", launch, CONSTS, lambda fn: fn() or 1.0) == (8, 1)


def test_no_config_fits_raises_for_the_smaller_chunk_fallback():
    def launch(cfg):
        raise OutOfResources(300_000, 232_448, "shared memory")
    with pytest.raises(OutOfResources):
        tuning.choose("bwd_grads", "k4", launch, CONSTS, lambda fn: fn() or 1.0)


def test_knobs(monkeypatch):
    monkeypatch.setenv("FLEXLA_KERNEL_CONFIG", "bwd_grads=8x2, chunk_output=2x1")
    assert tuning.choose("bwd_grads", "k5", None, CONSTS) == (8, 2)
    monkeypatch.setenv("FLEXLA_KERNEL_CONFIG", "")
    monkeypatch.setenv("FLEXLA_TUNE", "0")
    assert tuning.choose("bwd_grads", "k5", None, CONSTS) == tuning.PER_CHUNK_CANDIDATES[0]
    monkeypatch.setenv("FLEXLA_TUNE", "last")         # the other end of the search, for the checks
    assert tuning.choose("bwd_grads", "k5", lambda cfg: None, CONSTS) == tuning.PER_CHUNK_CANDIDATES[-1]

    def last_does_not_fit(cfg):
        if cfg == tuning.PER_CHUNK_CANDIDATES[-1]:
            raise OutOfResources(300_000, 232_448, "shared memory")
    assert tuning.choose("bwd_grads", "k5", last_does_not_fit, CONSTS) == tuning.PER_CHUNK_CANDIDATES[-2]
    runs = []
    monkeypatch.setenv("FLEXLA_TUNE", "compile")     # every candidate compiled (run once), none timed
    assert tuning.choose("bwd_grads", "k5", runs.append, CONSTS, timer=None) == tuning.PER_CHUNK_CANDIDATES[0]
    assert runs == tuning.PER_CHUNK_CANDIDATES


def test_sequence_lengths_within_a_power_of_two_share_a_bucket():
    grid = lambda NT: (NT, 1, 128)
    at = lambda NT: tuning.bucket("bwd_grads", dict(CONSTS, NT=NT), grid(NT))
    assert at(20) == at(32) != at(33)
    scan = lambda NT: tuning.bucket("chunk_states", dict(CONSTS, NT=NT), (2, 128))
    assert scan(17) == scan(32) != scan(64)
    assert tuning.bucket("bwd_grads", dict(CONSTS, K=64), grid(32)) != at(32)


def test_the_whole_gradient_kernel_at_wide_tiles_takes_eight_warps_only():
    wide = dict(CONSTS, BK=128, BV=128)
    assert tuning.candidates("bwd_grads", wide) == [(8, 1)]
    assert tuning.candidates("bwd_grads_dq_dk_d_g", wide) == [(4, 1), (8, 1)]     # a split kernel: both
    assert tuning.candidates("bwd_grads", dict(CONSTS, BK=64, BV=64)) == [(4, 1), (8, 1)]


def test_the_output_kernel_also_tunes_where_its_loads_go():
    cands = tuning.candidates("chunk_output", CONSTS)
    assert cands == tuning.OUTPUT_CANDIDATES and {tuning.knobs(c)["EARLY_LOADS"] for c in cands} == {0, 1}
    assert tuning.knobs((8, 1)) == {} and tuning.config_name((8, 1, 1)) == "8x1 early loads"
    # its fix-up pass keeps the loads at first use, which hold the least shared memory
    assert tuning.fix_up_config("chunk_output", CONSTS) == (8, 1, 0)
    assert tuning.candidates("chunk_output", dict(CONSTS, BK=16, BV=16)) == [(4, 1, 0)]


def test_small_tiles_keep_four_warps():
    assert tuning.candidates("bwd_grads", dict(CONSTS, BK=16, BV=16)) == [(4, 1)]
    assert tuning.candidates("bwd_grads", CONSTS) == [(4, 1), (8, 1)]


def test_scans_carrying_a_large_state_slice_also_try_eight_warps_at_one_to_three_stages():
    assert tuning.candidates("bwd_states", dict(CONSTS, K=256, BK=256)) == tuning.LOOP_CANDIDATES + [(8, 1), (8, 2), (8, 3)]
    assert tuning.candidates("fused_fwd", dict(CONSTS, K=256, BK=64, BV=64)) == tuning.LOOP_CANDIDATES  # K split


def test_every_scan_also_tries_two_warpgroups_at_three_stages():
    """The scans, not the fused kernels, whatever their state slice: (8, 3) once, last."""
    assert tuning.candidates("chunk_states", CONSTS) == tuning.LOOP_CANDIDATES + [(8, 3)]     # 128 x 64
    assert tuning.candidates("bwd_states", dict(CONSTS, BK=64, BV=64)) == tuning.LOOP_CANDIDATES + [(8, 3)]
    narrow = tuning.candidates("chunk_states", dict(CONSTS, BK=128, BV=32))
    assert narrow == tuning.NARROW_V_LOOP_CANDIDATES + [(8, 3)]
    assert tuning.candidates("fused_fwd", CONSTS) == tuning.LOOP_CANDIDATES


def test_scans_in_narrow_v_slices_never_run_at_one_stage():
    """4 warps at 1 stage gave wrong states on the H200 in V slices of 32; 16-wide tiles (CUDA cores)
    keep the usual loop candidates."""
    narrow = tuning.candidates("chunk_states", dict(CONSTS, BK=128, BV=32))
    assert all(stages > 1 for _, stages in narrow)
    assert tuning.candidates("bwd_states", dict(CONSTS, BK=16, BV=16))[:2] == tuning.LOOP_CANDIDATES


def test_search_over_plain_values_keeps_them_plain(tmp_path):
    """The backward's chunk size is searched the same way: ints stay ints on disk and back."""
    runs = []
    assert tuning.search("k8", [64, 32], runs.append, fake_timer({64: 2.0, 32: 1.0}, runs)) == 32
    tuning.reset()
    assert tuning.search("k8", [64, 32], None) == 32
    assert tuning.pass_bucket(128, 128, "bf16", 128, 20) == tuning.pass_bucket(128, 128, "bf16", 128, 32)


def test_without_a_device_to_time_on_the_first_candidate_runs_untimed():
    runs = []
    assert tuning.choose("bwd_grads", None, runs.append, CONSTS, timer=None) == (4, 1)
    assert runs == []
