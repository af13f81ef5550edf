"""The GPU benchmark script keeps working: its --dry mode (tiny shapes, CPU interpreter) runs the
same correctness checks and the timing loop for one op."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_run_dry(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path)}
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_run.py"), "--dry", "--ops", "chunk_simple_gla", "--check-ops", "chunk_simple_gla",
                          "--modes", "fwd"], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "correctness: ALL PASS" in out.stdout
    assert (tmp_path / "results.json").exists() and (tmp_path / "correctness.json").exists()
