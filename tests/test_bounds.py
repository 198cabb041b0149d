"""Inputs that set the amount of work are bounded: refused in one line with the range, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

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
])
def test_work_setting_inputs_are_bounded(tmp_path: Path, args: list[str], expected: str) -> None:
    # each of these once ran for minutes or was killed by the OOM killer; now it is refused before any work
    proc = exitstorm(*args, "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and expected in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []
