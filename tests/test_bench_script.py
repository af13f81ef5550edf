"""The GPU benchmark script keeps working: its --dry mode (tiny shapes, CPU interpreter) runs the
same correctness checks and the timing loop for one op, and --resume times only missing rows."""
import json
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


def test_gpu_run_resume_times_only_the_missing_rows(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path)}
    run = lambda *a: subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_run.py"), "--dry", "--skip-check",
                                     "--modes", "fwd", "--tag", "_resume", *a],
                                    capture_output=True, text=True, timeout=600, env=env)
    first = run("--ops", "chunk_linear_attn")
    assert first.returncode == 0, first.stderr[-3000:]
    before = json.loads((tmp_path / "results_resume.json").read_text())
    second = run("--ops", "chunk_linear_attn,chunk_retention", "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming: 1 rows kept" in second.stdout
    after = json.loads((tmp_path / "results_resume.json").read_text())
    assert [r["op"] for r in after] == ["chunk_linear_attn", "chunk_retention"]
    assert after[0] == before[0]           # kept as it was, not timed again


def test_ab_launch_dry_times_each_value(tmp_path):
    """bench/ab_launch.py (the A/B of a launcher's knob, here the scans' narrowest K slice) runs and
    writes one row per value."""
    env = {**os.environ, "OUT": str(tmp_path)}
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "ab_launch.py"), "--dry", "--ops", "chunk_linear_attn",
                          "--knob", "SCAN_BK", "--values", "64,32", "--tag", "_ab"], capture_output=True, text=True,
                         timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads((tmp_path / "results_ab.json").read_text())
    assert [(r["op"], r["scan_bk"]) for r in rows] == [("chunk_linear_attn", 64), ("chunk_linear_attn", 32)]
    assert all(r["flexla_ms"] for r in rows)
