"""Launch-time choices: the block sizes of a launch."""
import pytest

from flexla.runtime.launch import block_sizes


@pytest.mark.parametrize("args, expected", [
    ((64, 128, 128, False), {"BC": 64, "BK": 128, "BV": 128, "NV": 1}),
    ((64, 128, 128, True), {"BC": 64, "BK": 128, "BV": 64, "NV": 2}),
    ((64, 100, 100, False), {"BC": 64, "BK": 128, "BV": 128, "NV": 1}),
    ((64, 100, 100, True), {"BC": 64, "BK": 128, "BV": 64, "NV": 2}),
    ((32, 8, 8, True), {"BC": 32, "BK": 16, "BV": 16, "NV": 1}),
    ((64, 64, 200, True), {"BC": 64, "BK": 64, "BV": 64, "NV": 4}),
])
def test_block_sizes(args, expected):
    assert block_sizes(*args) == expected


def test_block_sizes_max_bv():
    assert block_sizes(64, 64, 200, True, max_bv=32) == {"BC": 64, "BK": 64, "BV": 32, "NV": 7}
    assert block_sizes(64, 64, 200, False, max_bv=32)["BV"] == 256
