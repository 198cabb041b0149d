"""Run one experiment and write its results directory.

Layout (DESIGN §8): ``events.jsonl``, ``summary.json`` and
``histograms/NAME.hlog`` + ``NAME.hgrm``. Nothing in the outputs depends on
wall-clock time or on the machine, so the same config and seed give the same
bytes.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import trio

from exitstorm.config import Experiment
from exitstorm.results import atomic_directory
from exitstorm.world import World


def cpu_accounting(world: World) -> dict[str, Any]:
    """CPU time by thread class and idle, in ns and as shares of cores x elapsed."""
    sched = world.scheduler
    elapsed = world.runtime.now
    capacity_ns = len(sched.cores) * elapsed
    by_class: dict[str, int] = {}
    for core in sched.cores:
        for cls, ns in core.busy.items():
            by_class[cls] = by_class.get(cls, 0) + ns
    idle = sum(core.idle_ns for core in sched.cores)
    run = sum(th.run_ns for th in sched.threads)
    spin = sum(th.spin_ns for th in sched.threads)
    share = {cls: round(ns / capacity_ns, 6) for cls, ns in sorted(by_class.items())} if capacity_ns else {}
    share["idle"] = round(idle / capacity_ns, 6) if capacity_ns else 0.0
    return {
        "cpu_share": share,
        "cpu_time_ns": {"run": run, "spin": spin, "idle": idle, "cores_x_elapsed": capacity_ns},
    }


def summarize(world: World) -> dict[str, Any]:
    exp = world.experiment
    sched = world.scheduler
    frames = {
        name: {
            "frames": st.lateness.count,
            "janky": st.janky,
            "lateness_ms": st.lateness.percentiles_ms(),
            "response_ms": st.response.percentiles_ms(),
        }
        for name, st in world.frames.items()
    }
    return {
        "exitstorm": version("exitstorm"),
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "config": exp.source,
        "seed": exp.scenario.run.seed,
        "device": exp.device.name,
        "duration_ms": world.runtime.now / 1e6,
        "frames": frames,
        **cpu_accounting(world),
        "sched_delay_ms": {cls: rec.percentiles_ms() for cls, rec in sorted(world.sched_delay.items())},
        "scheduler": {
            "events": world.runtime.events_processed,
            "context_switches": sum(th.wakeups + th.preemptions for th in sched.threads),
            "preemptions": sum(th.preemptions for th in sched.threads),
            "threads": len(sched.threads),
        },
        "config_echo": exp.raw,
    }


def run_experiment(exp: Experiment, out: Path, force: bool = False) -> dict[str, Any]:
    """Run ``exp`` and atomically write its results directory at ``out``."""
    with atomic_directory(out, force) as tmp:
        with (tmp / "events.jsonl").open("w") as events_out:
            world = World(exp, events_out)
            trio.run(world.runtime.run)
        summary = summarize(world)
        hist_dir = tmp / "histograms"
        recorders = [rec for st in world.frames.values() for rec in (st.lateness, st.response)]
        recorders += [world.sched_delay[k] for k in sorted(world.sched_delay)]
        for rec in recorders:
            rec.write(hist_dir, world.runtime.now)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
