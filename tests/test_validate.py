"""``exitstorm validate``: its arithmetic, the simulated side, and the real harness on this machine's kernel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from exitstorm import validate as val
from exitstorm.config import load_experiment
from exitstorm.schema import ConfigError
from exitstorm.victims import POOL_SAMPLE_NS
from exitstorm.world import World
from exitstorm.zram import active_swaps
from tests.conftest import HOST_PROBLEM, ROOT, exitstorm

VM_STORM = ROOT / "configs" / "vm_storm.toml"
VM_2CORE = ROOT / "configs" / "devices" / "vm_2core.toml"
VM_STORM_PREVIEW = ROOT / "configs" / "vm_storm_preview.toml"
PREVIEW = val.preview_spec(load_experiment(VM_STORM_PREVIEW))
MS = 1_000_000


def test_returned_is_the_first_sample_after_the_kill_with_90_percent_of_the_pool_gone() -> None:
    samples = [(0, 1000), (5, 1000), (10, 1000), (15, 600), (20, 150), (25, 100), (30, 0)]
    # pool 1000 at the kill (t=10): 90% back when it is <= 100, first seen at t=25
    assert val.returned_at(samples, kill_ns=10) == 15
    assert val.returned_at(samples, kill_ns=12) == 13
    assert val.returned_at([(0, 1000), (5, 500)], kill_ns=0) is None
    assert val.returned_at([(5, 1000)], kill_ns=0) is None


def test_relative_error_and_medians() -> None:
    assert val.relative_error(12.0, 10.0) == pytest.approx(0.2)
    assert val.relative_error(8.0, 10.0) == pytest.approx(-0.2)
    assert val.relative_error(1.0, 0.0) is None and val.relative_error(None, 1.0) is None
    runs = [{"exit_median_ms": 3.0, "returned_ms": None}, {"exit_median_ms": 1.0, "returned_ms": 4.0},
            {"exit_median_ms": 2.0, "returned_ms": 6.0}]
    assert val.median_figures(runs) == {"exit_median_ms": 2.0, "returned_ms": 5.0}
    assert val.figure_ranges(runs) == {"exit_median_ms": [1.0, 3.0], "returned_ms": [4.0, 6.0]}


def test_real_frames_go_through_the_simulators_frame_accounting() -> None:
    period = PREVIEW.period_ns
    t0 = 7 * MS
    # frame 1 ends 3 ms after its deadline, frame 2 1 ms after its own (misses); frame 0 takes 4 ms
    frames = [(0, t0, t0 + 4 * MS), (1, t0 + period, t0 + 2 * period + 3 * MS),
              (2, t0 + 2 * period, t0 + 3 * period + 1 * MS)]
    figures = val.frame_figures(val.real_frame_stats(frames, period))
    assert figures["preview_misses"] == 2
    # lateness 0, 3 and 1 ms: p99 of three samples is the largest; response p99 is frame 1's period + 3 ms
    assert figures["preview_lateness_p99_ms"] == pytest.approx(3.0, rel=1e-3)
    assert figures["preview_response_p99_ms"] == pytest.approx((period + 3 * MS) / MS, rel=1e-3)


def test_every_cell_is_a_valid_storm_scenario() -> None:
    cells = val.cells(load_experiment(VM_STORM_PREVIEW).config.storm.count)
    assert [(c.count, c.mrelease, c.preview) for c in cells] == [
        (1, False, False), (2, False, False), (4, False, False), (8, False, False),
        (1, True, False), (2, True, False), (4, True, False), (8, True, False), (8, False, True)]
    for cell in cells:
        exp = load_experiment(VM_STORM_PREVIEW if cell.preview else VM_STORM,
                              val.sim_overrides(VM_2CORE, cell, 50, 3.9))
        storm = exp.config.storm
        assert (storm.count, storm.swapped_mb, storm.reapers) == (cell.count, 50, int(cell.mrelease))
        assert [p.name for p in exp.config.periodic] == (["preview"] if cell.preview else [])
    (preview,) = load_experiment(VM_STORM_PREVIEW, val.sim_overrides(VM_2CORE, cells[-1], 50, 3.9)).config.periodic
    assert (preview.thread.policy, preview.thread.prio, preview.budget_us) == ("fifo", 2, 4000)
    # the real preview: 60 fps, 4 ms a frame, 60 frames, the kills 100 ms after its first release
    assert PREVIEW == val.PreviewSpec(16_666_667, 4 * MS, 2, 60, 100 * MS)


def test_a_preview_scenario_needs_a_fifo_preview_started_before_the_kills() -> None:
    with pytest.raises(ConfigError, match='named "preview" with policy "fifo"'):
        val.preview_spec(load_experiment(VM_STORM))
    with pytest.raises(ConfigError, match="storm.kill_at_ms: expected a storm killed at or after"):
        val.preview_spec(load_experiment(VM_STORM_PREVIEW, [
            "storm.kill_at_ms=40", 'periodic=[{name = "preview", period_us = 16666.667, budget_us = 4000, '
            'start_ms = 50, thread = {policy = "fifo", prio = 2, cpuset = "all", thread_class = "preview"}}]']))


def test_simulated_cells_alone_with_preview() -> None:
    alone = val.simulate(VM_STORM, VM_2CORE, val.Cell(1, False), 100, 3.9)
    # one victim alone on a core: its exit costs exit_fixed + 25 600 swap entries (vm_2core: 0.7 ms + 388 ns each)
    assert alone["exit_median_ms"] == pytest.approx(0.7 + 25_600 * 388e-6, rel=0.02)
    assert alone["exit_max_ms"] == alone["exit_median_ms"]
    assert 0 < alone["returned_ms"] <= alone["exit_median_ms"] + POOL_SAMPLE_NS / MS
    storm = val.simulate(VM_STORM_PREVIEW, VM_2CORE, val.Cell(8, False, True), 50, 3.9)
    assert storm["exit_max_ms"] >= storm["exit_median_ms"] > 0
    assert storm["preview_misses"] == 0 and storm["preview_response_p99_ms"] >= PREVIEW.budget_ns / MS


def run_cell(cell: val.Cell, swapped_mb: int) -> World:
    world = World(load_experiment(VM_STORM, val.sim_overrides(VM_2CORE, cell, swapped_mb, 3.9)), None)
    trio.run(world.runtime.run)
    return world


def test_storm_reaper_shares_the_teardown_of_the_victim_it_reaches_before_exit_mm() -> None:
    world = run_cell(val.Cell(1, True), 100)
    reaper = world.runtime.actors["storm_reaper"]
    (victim,) = world.processes
    assert (reaper.reaps, reaper.esrch) == (1, 0)
    # the reaper zapped part of the swap; the exit the rest; everything is back
    assert 0 < victim.zap.reaped[1] < 25_600 and world.memory.zpool == 0 and victim.freed_at is not None
    world = run_cell(val.Cell(8, True), 20)
    reaper = world.runtime.actors["storm_reaper"]
    assert reaper.reaps + reaper.esrch == 8 and reaper.reaps >= 1
    assert world.memory.zpool == 0 and all(p.exited_at is not None for p in world.processes)


def test_storm_reapers_need_the_process_mrelease_policy_and_a_thread() -> None:
    proc = exitstorm("run", str(VM_STORM), "--set", "storm.reapers=1", "--set", 'policies.reap="none"')
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "storm.reapers: expected 0 with policies.reap = 'none'" in proc.stderr
    proc = exitstorm("run", str(VM_STORM), "--set", "storm.reapers=1", "--set", "storm.reaper_thread=false")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "storm.reaper_thread" in proc.stderr


def test_the_real_reaper_runs_at_the_nice_of_the_scenarios_reaper_thread(tmp_path: Path) -> None:
    assert val.reaper_nice(VM_STORM) == -20
    fifo = tmp_path / "fifo_reaper.toml"
    fifo.write_text("\n".join([
        f'base = "{VM_STORM}"',
        f'device = "{VM_2CORE}"',
        f'kernel = "{ROOT / "configs" / "kernels" / "swap_table.toml"}"',
        "[storm]",
        'reaper_thread = { policy = "fifo", prio = 1, cpuset = "all", thread_class = "reaper" }',
    ]) + "\n")
    with pytest.raises(ConfigError, match='storm.reaper_thread.policy: expected "fair"'):
        val.reaper_nice(fifo)


def test_bad_arguments_are_one_line_and_status_2(tmp_path: Path) -> None:
    for args in (["--repeats", "0"], ["--swapped-mb", "-5"], ["--random-bytes", "5000"]):
        proc = exitstorm("validate", str(VM_2CORE), "--out", str(tmp_path / "v"), *args)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert args[0] in proc.stderr
    assert not (tmp_path / "v").exists()


@pytest.mark.skipif(HOST_PROBLEM is None, reason="this machine can run the real-kernel harness")
def test_without_the_host_validate_says_what_is_missing(tmp_path: Path) -> None:
    proc = exitstorm("validate", str(VM_2CORE), "--out", str(tmp_path / "v"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and HOST_PROBLEM in proc.stderr


@pytest.mark.skipif(HOST_PROBLEM is not None, reason=f"no real-kernel harness here: {HOST_PROBLEM}")
def test_validation_on_this_kernel(tmp_path: Path) -> None:
    swaps_before = active_swaps()
    out = tmp_path / "v"
    proc = exitstorm("validate", str(VM_2CORE), "--repeats", "1", "--swapped-mb", "20", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert active_swaps() == swaps_before  # ZRAM put back as it was
    report = json.loads((out / "validation.json").read_text())
    assert len(report["cells"]) == len(val.cells(8)) and 3.0 < report["compression_ratio"] < 5.0
    for row in report["cells"]:
        (run,) = row["real_runs"]
        count = row["cell"]["count"]
        assert len(run["exit_ns"]) == count and all(ns > 0 for ns in run["exit_ns"])
        assert len(run["mrelease_results"]) == (count if row["cell"]["mrelease"] else 0)
        assert set(run["mrelease_results"]) <= {"ok", "ESRCH"}
        for key in ("exit_median_ms", "exit_max_ms", "returned_ms"):
            assert row["real"][key] > 0 and row["simulated"][key] > 0
            assert row["relative_error"][key] == pytest.approx(
                (row["simulated"][key] - row["real"][key]) / row["real"][key])
        if row["cell"]["preview"]:
            assert row["real"]["preview_response_p99_ms"] >= PREVIEW.budget_ns / MS
    assert (out / "validation.png").stat().st_size > 10_000
    proc = exitstorm("validate", str(VM_2CORE), "--repeats", "1", "--out", str(out))
    assert proc.returncode == 2 and "use --force" in proc.stderr
