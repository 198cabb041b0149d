"""Inputs that set the amount of work are bounded: refused in one line with the range, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from exitstorm.lab.config import load_experiment
from exitstorm.runs.experiment import run_experiment
from tests.conftest import ROOT, exitstorm

CONFIG = str(ROOT / "configs" / "camera_launch.toml")
AXES = [f"--grid=apps.count={','.join(str(10 + i) for i in range(10))}",
        "--grid=apps.swapped_mb.max=" + ",".join(str(60 + i) for i in range(10)),
        "--grid=scenario.duration_s=" + ",".join(str(2 + i) for i in range(10)),
        "--grid=lmkd.reapers=" + ",".join(str(1 + i % 4) for i in range(10)),
        "--grid=scenario.hist_interval_ms=" + ",".join(str(100 + i) for i in range(10))]


@pytest.mark.parametrize("args, expected", [
    (["run", "/dev/zero"], "/dev/zero: expected a TOML file of at most 1024 KiB"),
    (["compare", CONFIG, "--seeds", "1000000000"], "--seeds: expected an integer in 1..100000"),
    (["sweep", CONFIG, "--seeds", "10", *AXES], "--grid points x --seeds: expected at most 100000 runs, got "
                                                "100000 x 10"),
    (["sweep", CONFIG, "--grid", "apps.count=20,,21"], "--grid apps.count=20,,21: expected key=value1,value2,..."),
    (["compare", CONFIG, "--variant", "a:apps.count=20,,lmkd.reapers=1"], "expected key=value between every two"),
    (["run", CONFIG, "--set", "kernel_overrides.sched.base_slice_ns=1"],
     "sched.base_slice_ns: expected a number in [50000, 1e+09]"),
    (["run", CONFIG, "--set", "kernel_overrides.exit.chunk_entries=1"],
     "exit.chunk_entries: expected an integer in 16..1048576"),
    (["run", CONFIG, "--set", "lmkd.props.psi_window_ms=0.001"],
     "lmkd.props.psi_window_ms: expected a number in [500, 10000]"),
    (["run", CONFIG, "--set", "scenario.hist_interval_ms=1e-6"],
     "scenario.hist_interval_ms: expected a number in [1, 3.6e+06]"),
])
def test_work_setting_inputs_are_bounded(tmp_path: Path, args: list[str], expected: str) -> None:
    # each of these once ran for minutes, was killed by the OOM killer or multiplied the work (chunk_entries=1:
    # 16x the events), or is outside what the kernel accepts (a PSI window); now it is refused before any work
    proc = exitstorm(*args, "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and expected in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_long_run_keeps_bounded_timelines_and_its_peak_at_the_finest_window(tmp_path: Path) -> None:
    """What grows with virtual time is downsampled: at most scenario.timeline_max_points per timeline, the
    period doubled as often as needed; the peak of exit work is still found at cpu_window_ms."""
    def run(name: str, points: int) -> dict:
        exp = load_experiment(ROOT / "configs" / "vm_storm.toml",
                              ["scenario.cpu_window_ms=10", f"scenario.timeline_max_points={points}"])
        return run_experiment(exp, tmp_path / name)

    whole, bounded = run("whole", 1000), run("bounded", 100)
    assert len(whole["free_memory_mb"]["t_ms"]) == 501  # 5 s at 10 ms, and the end
    memory, cpu = bounded["free_memory_mb"], bounded["cpu_share"]["timeline"]
    assert memory["period_ms"] == 80.0 and len(memory["t_ms"]) <= 100 and memory["t_ms"][:3] == [0.0, 80.0, 160.0]
    assert memory["mb"] == whole["free_memory_mb"]["mb"][::8][:len(memory["mb"])]
    assert cpu["window_ms"] == 80.0 and len(cpu["t_ms"]) <= 100
    assert bounded["cpu_share"]["exit_work_peak"] == whole["cpu_share"]["exit_work_peak"]
    assert whole["cpu_share"]["exit_work_peak"]["share"] > 0
