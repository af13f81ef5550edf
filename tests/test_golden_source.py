"""Golden files of generated source: a refactor shows exactly what it changed in the kernels.
Regenerate with FLEXLA_UPDATE_GOLDEN=1 after checking the diff is intended."""
import os
import re
from pathlib import Path

import pytest

from flexla.variants import get

GOLDEN = Path(__file__).parent / "golden"


def normalised(source: str) -> str:
    return re.sub(r"[0-9a-f]{32}", "<key>", source)


@pytest.mark.parametrize("name", ["simple_gla", "gla"])
def test_generated_source_matches_golden(name):
    source = normalised(get(name).compile().source)
    path = GOLDEN / f"{name}.py.txt"
    if os.environ.get("FLEXLA_UPDATE_GOLDEN"):
        path.write_text(source)
    assert source == path.read_text(), f"generated source of {name} changed; diff it against {path}"
