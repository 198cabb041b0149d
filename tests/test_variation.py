"""Run-to-run variation: every source is a parameter, and with all of them at zero every seed gives the same
storm (docs/model.md, "Run-to-run variation")."""

from __future__ import annotations

import io
import re
from pathlib import Path

import trio

from exitstorm.lab.config import load_experiment
from exitstorm.lab.world import World
from tests.conftest import ROOT

STORM = ROOT / "configs" / "vm_storm_harness.toml"
#: a storm long enough after the start for the vCPUs to reach their idle state, with a preview beside it
SETS = ["storm.count=4", "storm.swapped_mb=50", "storm.kill_at_ms=20", "scenario.duration_s=1"]


def exit_ns(path: Path, sets: list[str], seed: int) -> list[int]:
    world = World(load_experiment(path, sets, seed=seed), io.StringIO())
    trio.run(world.runtime.run)
    return [p.exited_at - p.killed_at for p in world.processes]


def quiet_device(tmp_path: Path) -> Path:
    """The VM's profile without interrupt time and idle states."""
    text = (ROOT / "configs" / "devices" / "vm_2core.toml").read_text()
    text = re.sub(r"idle_states = \[\n[^\]]*\]", "idle_states = []", text)
    text = re.sub(r"min_us = [0-9.]+\nmax_us = [0-9.]+", "min_us = 0\nmax_us = 0", text)
    assert "idle_states = []" in text and "max_us = 0" in text
    path = tmp_path / "quiet.toml"
    path.write_text(text)
    return path


def test_seeds_spread_a_storm_and_with_every_source_at_zero_they_do_not(tmp_path: Path) -> None:
    assert exit_ns(STORM, SETS, 1) != exit_ns(STORM, SETS, 2)
    off = [*SETS, f'device="{quiet_device(tmp_path)}"', "scenario.random_phases=false",
           "storm.random_last_cpu=false"]
    assert exit_ns(STORM, off, 1) == exit_ns(STORM, off, 2) == exit_ns(STORM, off, 7)


def test_each_source_alone_spreads_the_storm(tmp_path: Path) -> None:
    quiet = f'device="{quiet_device(tmp_path)}"'
    for on in (["scenario.random_phases=false"], ["storm.random_last_cpu=false"]):
        # the other source on, interrupts and idle states off
        sets = [*SETS, quiet, *on]
        assert len({tuple(exit_ns(STORM, sets, seed)) for seed in (1, 2, 3)}) > 1, on
    # the device's sources alone: tick-interrupt time (and the idle states it shifts)
    device_only = [*SETS, "scenario.random_phases=false", "storm.random_last_cpu=false"]
    assert len({tuple(exit_ns(STORM, device_only, seed)) for seed in (1, 2, 3)}) > 1
