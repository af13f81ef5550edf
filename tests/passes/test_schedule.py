import pytest

from flexla.passes.schedule import SCHEDULES, choose_schedule

SM = 132


@pytest.mark.parametrize("B, H, NT, NV, expected", [
    (8, 64, 64, 1, "fused"),          # 512 programs cover 132 SMs twice
    (8, 16, 64, 1, "chunk"),          # 128 programs, long sequence
    (1, 4, 64, 1, "chunk"),           # few programs, long sequence
    (1, 4, 2, 1, "fused"),            # few programs but only two chunks
    (1, 4, 1, 1, "fused"),
    (1, 4, 3, 1, "chunk"),
    (2, 66, 64, 2, "fused"),          # exactly 2 * SM programs
    (2, 66, 64, 1, "chunk"),          # NV counts: half as many programs
    (1, 263, 64, 1, "chunk"),         # one program short of 2 * SM
])
def test_heuristic(B, H, NT, NV, expected):
    assert choose_schedule(B, H, NT, NV, SM) == expected


def test_heuristic_depends_on_sm_count():
    assert choose_schedule(4, 16, 32, 1, sm_count=32) == "fused"
    assert choose_schedule(4, 16, 32, 1, sm_count=132) == "chunk"


@pytest.mark.parametrize("forced", SCHEDULES)
def test_forced_overrides_heuristic(forced):
    assert choose_schedule(1, 1, 1000, 1, SM, forced=forced) == forced
    assert choose_schedule(64, 64, 1, 4, SM, forced=forced) == forced


@pytest.mark.parametrize("bad", ["Fused", "parallel", "", "chunked"])
def test_bad_forced_value_raises(bad):
    with pytest.raises(ValueError, match="schedule must be one of"):
        choose_schedule(1, 1, 8, 1, SM, forced=bad)
