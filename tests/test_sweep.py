"""Sweeps: the grid, local and Dask executors giving the same bytes, interruption and --resume."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exitstorm.runs.sweep import grid_points, parse_grid, sweep
from exitstorm.schema import ConfigError
from tests.conftest import ROOT, dir_bytes, exitstorm

CONFIG = str(ROOT / "configs" / "camera_launch.toml")
SETS = ["scenario.duration_s=1.0"]
GRID = parse_grid(["apps.count=12,20", 'policies.swap_release="sync","async_batch"'])


def test_grid_is_the_cartesian_product_in_the_order_given() -> None:
    grid = parse_grid(["apps.count=10,20,30", 'kernel="slot_cache","swap_table"', 'scenario.events=[],["actor"]'])
    assert grid[2] == ("scenario.events", [[], ["actor"]])
    points = grid_points(grid)
    assert len(points) == 12
    assert points[0] == ("p000", {"apps.count": 10, "kernel": "slot_cache", "scenario.events": []})
    assert points[1] == ("p001", {"apps.count": 10, "kernel": "slot_cache", "scenario.events": ["actor"]})
    assert points[11] == ("p011", {"apps.count": 30, "kernel": "swap_table", "scenario.events": ["actor"]})


@pytest.mark.parametrize("bad", ["apps.count", "apps.count=", "=1,2"])
def test_a_malformed_axis_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="--grid"):
        parse_grid([bad])


def test_an_axis_given_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="already an axis"):
        parse_grid(["apps.count=1,2", "apps.count=3"])


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sweep") / "local"
    sweep(CONFIG, GRID, 2, out, sets=SETS, workers=2)
    return out


def test_a_sweep_writes_one_row_per_run_and_a_summary_per_point(local: Path) -> None:
    report = json.loads((local / "sweep.json").read_text())
    assert [p["point"] for p in report["points"]] == ["p000", "p001", "p002", "p003"]
    assert report["points"][3]["overrides"] == {"apps.count": 20, "policies.swap_release": "async_batch"}
    with (local / "sweep.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8 == len(report["runs"])
    assert list(rows[0])[:4] == ["point", "apps.count", "policies.swap_release", "seed"]
    for row, run in zip(rows, report["runs"]):
        assert row["point"] == run["point"] and int(row["seed"]) == run["seed"]
        # a run in which no exit finished has no exit latency: an empty cell, null in the JSON
        p50 = run["exit_latency_p50_ms"]
        assert row["exit_latency_p50_ms"] == "" if p50 is None else float(row["exit_latency_p50_ms"]) == p50
        summary = json.loads((local / "runs" / run["point"] / f"seed{run['seed']}" / "summary.json").read_text())
        assert summary["kills"] == run["kills"] and summary["config_echo"]["apps"]["count"] == run["apps.count"]
    with (local / "sweep_points.csv").open() as fh:
        points = list(csv.DictReader(fh))
    assert len(points) == 4
    kills = [r["kills"] for r in report["runs"] if r["point"] == "p002"]
    assert float(points[2]["kills_mean"]) == pytest.approx(sum(kills) / 2)
    assert not local.with_name("local.partial").exists()


def test_dask_runs_give_the_same_bytes_as_local_processes(local: Path, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    out = tmp_path / "dask"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        sweep(CONFIG, GRID, 2, out, sets=SETS, dask=cluster.scheduler_address)
    assert dir_bytes(out) == dir_bytes(local)


def test_an_interrupted_sweep_keeps_finished_runs_and_resume_runs_only_the_rest(local: Path, tmp_path: Path) -> None:
    out = tmp_path / "cut"
    calls: list[tuple[int, int, int]] = []

    def interrupt_after_three(done: int, total: int, kept: int) -> None:
        calls.append((done, total, kept))
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep(CONFIG, GRID, 2, out, sets=SETS, workers=1, on_run=interrupt_after_three)
    partial = tmp_path / "cut.partial"
    assert not out.exists()
    finished = sorted(p.parent for p in partial.glob("runs/*/seed*/summary.json"))
    assert len(finished) == 3
    inodes = {p: (p / "summary.json").stat().st_ino for p in finished}

    with pytest.raises(ConfigError, match="--resume"):
        sweep(CONFIG, GRID, 2, out, sets=SETS, workers=1)
    with pytest.raises(ConfigError, match="another plan"):
        sweep(CONFIG, GRID, 3, out, sets=SETS, workers=1, resume=True)

    calls.clear()
    sweep(CONFIG, GRID, 2, out, sets=SETS, workers=1, resume=True, on_run=lambda *a: calls.append(a))
    assert calls[0] == (3, 8, 3) and calls[-1] == (8, 8, 3) and len(calls) == 6
    runs = {p.parent.relative_to(out) for p in out.glob("runs/*/seed*/summary.json")}
    assert len(runs) == 8
    assert all((out / p.relative_to(partial) / "summary.json").stat().st_ino == ino for p, ino in inodes.items())
    assert dir_bytes(out) == dir_bytes(local)
    assert not partial.exists()


def test_ctrl_c_ends_a_sweep_with_status_130_and_resume_finishes_it(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    args = [sys.executable, "-m", "exitstorm", "sweep", CONFIG, "--grid", "apps.count=12,20", "--seeds", "8",
            "--out", str(out), "--set", "scenario.duration_s=2.5", "--workers", "2"]
    # a command started in the background by a non-interactive shell inherits SIGINT ignored; a user's
    # Ctrl-C finds it at its default, and so must this test's
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    partial = tmp_path / "cli.partial"
    deadline = time.monotonic() + 120
    while not list(partial.glob("runs/*/seed*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "--resume" in stdout and "Traceback" not in stderr
    kept = list(partial.glob("runs/*/seed*/summary.json"))
    assert 1 <= len(kept) < 16 and not list(partial.glob("runs/*/.*.tmp"))
    assert f"interrupted: {len(kept)} finished runs kept" in stdout
    again = exitstorm(*args[3:], "--resume")
    assert again.returncode == 0, again.stderr
    assert len(json.loads((out / "sweep.json").read_text())["runs"]) == 16


def test_sweep_bad_input_is_one_line_and_status_2(tmp_path: Path) -> None:
    for extra, expected in ((["--grid", "apps.count=10,x y"], "apps.count"),
                            (["--grid", "apps.nope=1,2"], "apps.nope"),
                            (["--grid", "apps.count=1,2", "--workers", "2", "--dask", "tcp://x:1"], "--dask")):
        proc = exitstorm("sweep", CONFIG, "--seeds", "1", "--out", str(tmp_path / "bad"), *extra)
        assert proc.returncode == 2, (extra, proc.stderr)
        assert proc.stderr.count("\n") == 1 and expected in proc.stderr
        assert not (tmp_path / "bad").exists() and not (tmp_path / "bad.partial").exists()


def test_a_failing_run_names_its_point_and_seed_and_keeps_the_rest(tmp_path: Path) -> None:
    # with 2.5 GB of ZRAM the camera's allocation runs out of memory once the OOM killer has killed both apps:
    # what is left (the system, the camera) the model cannot kill
    proc = exitstorm("sweep", CONFIG, "--grid", "device_overrides.memory.zram_disksize_mb=12288,2500", "--seeds",
                     "1", "--workers", "1", "--out", str(tmp_path / "oom"), "--set", "scenario.duration_s=2",
                     "--set", "apps.count=2")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "p001 seed 1 (device_overrides.memory.zram_disksize_mb=2500)" in proc.stderr
    assert "no process left that the OOM killer may choose" in proc.stderr
    assert "1 finished runs kept" in proc.stderr
    assert (tmp_path / "oom.partial" / "runs" / "p000" / "seed1" / "summary.json").is_file()


def test_points_named_alike_in_two_sweeps_of_one_process_are_read_each_for_itself() -> None:
    # a process that runs two sweeps (a notebook, a test) sees "p000" twice with other overrides: the second
    # must not get the first's experiment (workers fork with what the parent has read)
    from exitstorm.runs.executor import load_variant

    sets = ("scenario.duration_s=1.0",)
    first = load_variant(CONFIG, sets, ("p000", {"apps.count": 3}))
    second = load_variant(CONFIG, sets, ("p000", {"apps.count": 5}))
    assert (first.config.apps.count, second.config.apps.count) == (3, 5)
    assert load_variant(CONFIG, sets, ("p000", {"apps.count": 3})) is first
